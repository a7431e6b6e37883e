# obolpay/riskd: Obol's risk engine (CEL rules, Redis velocity); never sees a card number
# Built by deploy/images/build.sh (make images) from a static binary on the
# host; see deploy/images/README.md. Nothing is pulled: FROM scratch.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG LICENSES=NOASSERTION
COPY rootfs/ /
COPY riskd /riskd
USER 65532:65532
EXPOSE 8081 9091
LABEL org.opencontainers.image.title="riskd" \
      org.opencontainers.image.description="Obol's risk engine (CEL rules, Redis velocity); never sees a card number" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/obolpay/obol" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.vendor="Obol"
ENTRYPOINT ["/riskd"]
CMD ["--http-addr=0.0.0.0:8081", "--grpc-addr=0.0.0.0:9091"]

# obolpay/gatewayd: Obol's payments API and card-revealing egress proxy (cardholder-data environment)
# Built by deploy/images/build.sh (make images) from a static binary on the
# host; see deploy/images/README.md. Nothing is pulled: FROM scratch.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG LICENSES=NOASSERTION
COPY rootfs/ /
COPY gatewayd /gatewayd
USER 65532:65532
EXPOSE 8083 9093
LABEL org.opencontainers.image.title="gatewayd" \
      org.opencontainers.image.description="Obol's payments API and card-revealing egress proxy (cardholder-data environment)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/obolpay/obol" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.vendor="Obol"
ENTRYPOINT ["/gatewayd"]
CMD ["--http-addr=0.0.0.0:8083", "--grpc-addr=0.0.0.0:9093"]

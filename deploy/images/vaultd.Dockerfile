# obolpay/vaultd: Obol's card tokenization vault (cardholder-data environment)
# Built by deploy/images/build.sh (make images) from a static binary on the
# host; see deploy/images/README.md. Nothing is pulled: FROM scratch.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG LICENSES=NOASSERTION
COPY rootfs/ /
COPY vaultd /vaultd
USER 65532:65532
EXPOSE 8080 9090
LABEL org.opencontainers.image.title="vaultd" \
      org.opencontainers.image.description="Obol's card tokenization vault (cardholder-data environment)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/obolpay/obol" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.vendor="Obol"
ENTRYPOINT ["/vaultd"]
CMD ["--http-addr=0.0.0.0:8080", "--grpc-addr=0.0.0.0:9090"]

# obolpay/acquirer-sim: Obol's acquirer simulator (test cards, captures, refunds, settlements) for development and drills
# Built by deploy/images/build.sh (make images) from a static binary on the
# host; see deploy/images/README.md. Nothing is pulled: FROM scratch.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG LICENSES=NOASSERTION
COPY rootfs/ /
COPY acquirer-sim /acquirer-sim
USER 65532:65532
EXPOSE 8443
LABEL org.opencontainers.image.title="acquirer-sim" \
      org.opencontainers.image.description="Obol's acquirer simulator (test cards, captures, refunds, settlements) for development and drills" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/obolpay/obol" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.vendor="Obol"
ENTRYPOINT ["/acquirer-sim"]
CMD ["--addr=0.0.0.0:8443", "--pki-dir=/tmp/obol-tls", "--log-format=json"]

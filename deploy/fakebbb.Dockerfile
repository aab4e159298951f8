# fakebbb (the BBB API emulator, for demos and tests), FROM scratch, with
# /probe for health checks. Built by scripts/images.sh.
FROM scratch
COPY rootfs/ /
COPY fakebbb probe /
# Writable place for --properties (a bigbluebutton.properties for an agent).
COPY --chown=65532:65532 data/ /var/lib/fakebbb/
ENV FAKEBBB_LISTEN=0.0.0.0:8090 \
    PATH=/
USER 65532:65532
EXPOSE 8090/tcp
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 CMD ["/probe", "http://127.0.0.1:8090/bigbluebutton/api"]
ENTRYPOINT ["/fakebbb"]

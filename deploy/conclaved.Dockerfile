# conclaved (+ conclavectl when built, + /probe for health checks), FROM
# scratch: static binaries only. Built by scripts/images.sh (`make images`),
# which prepares the build context: conclaved, probe, rootfs/ (CA
# certificates, /etc/passwd, /tmp, conclavectl), data/ (empty).
FROM scratch
COPY rootfs/ /
COPY conclaved probe /
# The data dir must be writable by the unprivileged user; a named volume
# mounted here inherits this owner on first use.
COPY --chown=65532:65532 data/ /var/lib/conclave/
ENV CONCLAVE_DATA_DIR=/var/lib/conclave \
    CONCLAVE_LISTEN_HTTP=0.0.0.0:42353 \
    CONCLAVE_RAFT_ADDR=0.0.0.0:42354 \
    CONCLAVE_GOSSIP_ADDR=0.0.0.0:42355 \
    PATH=/
USER 65532:65532
VOLUME ["/var/lib/conclave"]
EXPOSE 42353/tcp 42354/tcp 42355/tcp 42355/udp
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 CMD ["/probe"]
ENTRYPOINT ["/conclaved"]

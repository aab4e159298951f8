# conclave-agent, FROM scratch. Built by scripts/images.sh when
# bin/conclave-agent exists. Mount the node's bigbluebutton.properties and
# point BBB_CONFIG at it (the default is bbb-web's own path), and give it
# CONCLAVE_GOSSIP_JOIN and CONCLAVE_GOSSIP_KEY.
FROM scratch
COPY rootfs/ /
COPY conclave-agent /
ENV CONCLAVE_AGENT_GOSSIP_ADDR=0.0.0.0:42356 \
    PATH=/
USER 65532:65532
EXPOSE 42356/tcp 42356/udp
ENTRYPOINT ["/conclave-agent"]

# kray's operator image: the runtime image plus the operator's extra (kopf, kubernetes, pydantic, pyyaml).
# Build from the repository root after the runtime image (images/build.sh, or `make images`):
#   docker build -f images/operator.Dockerfile --build-arg RUNTIME_IMAGE=kray:latest -t kray-operator:latest .
# The Helm chart (helm/kray-operator) runs it as uid 65532 with a read-only root filesystem and an
# emptyDir on /tmp: `python -m kray_operator --liveness=http://0.0.0.0:8080/healthz --all-namespaces`.

ARG RUNTIME_IMAGE=kray:latest
FROM ${RUNTIME_IMAGE}
USER root
# The runtime image already holds kray (both packages); install the [operator] extra of that very
# version from its installed metadata, so the sources need not be copied in again.
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi \
    && version="$(python -c 'import importlib.metadata as m; print(m.version("kray"))')" \
    && pip install --no-cache-dir --disable-pip-version-check "kray[operator]==${version}" \
    && python -c "import kopf, kubernetes, pydantic, yaml, kray_operator.__main__" \
    && groupadd --gid 65532 kray-operator \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kray-operator
# The root filesystem is read-only in the chart: HOME is the /tmp emptyDir, no bytecode is written,
# and the working directory is kept off sys.path (PYTHONSAFEPATH, Python 3.11+).
ENV HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONSAFEPATH=1
USER 65532:65532
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["python", "-m", "kray_operator"]
CMD ["--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]

# kray's runtime image: Python with kray installed (the `kray` CLI, the head and worker processes).
# Build from the repository root (images/build.sh, or `make images`):
#   docker build -f images/runtime.Dockerfile -t kray:latest .
# Without a registry, pass a local base: --build-arg BASE=localhost/kray-base:bookworm.
# Behind a TLS-intercepting proxy, give pip the proxy's CA for the build only:
#   --secret id=hostca,src=/etc/ssl/certs/ca-certificates.crt   (never COPY a CA into the image)
# Layers are ordered for the build cache: the dependencies depend on pyproject.toml alone, so a change of
# the sources rebuilds only kray's own small wheel layer (seconds, no network).

ARG BASE=python:3.11-slim

# --- deps stage: a virtual environment with kray's dependencies from pyproject.toml (wheels only, no
#     compilers), and numpy and pandas as in Ray's images (ordinary programs and KubeRay's samples import
#     them); pip stays (derived images install with it), setuptools goes (nothing imports it at run time)
FROM ${BASE} AS deps
RUN python3 -m venv /opt/kray/venv
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi \
    && /opt/kray/venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" >/src/requirements.txt \
    && /opt/kray/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /src/requirements.txt "numpy>=1.24" "pandas>=2" \
    && /opt/kray/venv/bin/pip uninstall --yes --quiet setuptools

# --- wheel stage: kray itself (both packages) as one wheel, built without network by build tools
#     installed before the sources are copied
FROM ${BASE} AS wheel
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi \
    && python3 -m venv /opt/tools \
    && /opt/tools/bin/pip install --no-cache-dir --disable-pip-version-check "setuptools>=77" wheel
COPY pyproject.toml README.md /src/
COPY runtime /src/runtime
COPY operator /src/operator
COPY compat /src/compat
RUN /opt/tools/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation \
        --wheel-dir /wheels /src /src/compat

# --- final stage: the base, a non-root user, the dependencies, then kray; no sources, no caches
FROM ${BASE}
ENV PATH=/opt/kray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/kray/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
RUN groupadd --gid 1000 kray \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/kray --shell /bin/bash kray
COPY --from=deps /opt/kray/venv /opt/kray/venv
COPY --from=wheel /wheels /opt/kray/wheels
RUN /opt/kray/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index \
        /opt/kray/wheels/*.whl \
    && rm -rf /opt/kray/wheels \
    && /opt/kray/venv/bin/python -c "import kray, zmq, cloudpickle, psutil, click, aiohttp, yaml, kray.dashboard.app, numpy, pandas, ray; assert ray is kray" \
    && ray --version \
    && printf '%s\n' '# kray and ray stay on PATH in login shells (KubeRay commands such as bash -lc "...").' \
        'case ":$PATH:" in *:/opt/kray/venv/bin:*) ;; *) PATH="/opt/kray/venv/bin:$PATH" ;; esac' \
        >/etc/profile.d/kray.sh \
    && env -i /bin/bash -lc 'command -v kray && command -v ray'
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
WORKDIR /home/kray
# GCS, dashboard and job API, client, metrics (Ray's ports).
EXPOSE 6379 8265 10001 8080
CMD ["kray", "--help"]

# syntax=docker/dockerfile:1.7
#
# CertAuto's operator image, with the destination plugins you choose:
#
#   docker build --build-arg PLUGINS="certauto-reflector certauto-acm" -t certauto .
#
# PLUGINS is a space-separated list of plugin distributions. A name that is a package
# of this workspace (plugins/*) is built from this source tree; anything else is a
# pip requirement installed from the package index (PyPI, or PLUGIN_INDEX_URL), e.g.
# "certauto-reflector some-company-certauto-plugin==1.4". Every dependency shared with
# the workspace is pinned to uv.lock. See docs/deployment.md.
#
# The image runs as uid/gid 65532 (non-root), writes nothing outside /tmp (bytecode is
# compiled at build time), so it runs with readOnlyRootFilesystem and an emptyDir on
# /tmp, as the Helm chart does.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ build
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
RUN python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1

WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY plugins/ plugins/
COPY certauto_core/ certauto_core/

# Every distribution of the workspace as a wheel: the core and the first-party plugins.
RUN uv build --all-packages --wheel --out-dir /wheels

# The locked versions of every third-party dependency of the workspace (no dev or test
# groups, no workspace packages): constraints, so only what is installed is pinned.
RUN uv export --frozen --all-packages --no-dev --no-emit-workspace --no-hashes \
        --format requirements-txt --output-file /tmp/constraints.txt

ARG PLUGINS="certauto-reflector"
# The index to install from instead of PyPI (a mirror that also serves PyPI's packages).
ARG PLUGIN_INDEX_URL=""
RUN set -eu; \
    uv venv --python /usr/local/bin/python3 /opt/certauto; \
    requirements="$(ls /wheels/certauto_core-*.whl)"; \
    for plugin in ${PLUGINS}; do \
        wheel_name="$(printf '%s' "${plugin}" | tr 'A-Z.-' 'a-z__')"; \
        local_wheel="$(ls /wheels/"${wheel_name}"-*.whl 2>/dev/null || true)"; \
        if [ -n "${local_wheel}" ]; then \
            requirements="${requirements} ${local_wheel}"; \
        else \
            requirements="${requirements} ${plugin}"; \
        fi; \
    done; \
    echo "installing: ${requirements}"; \
    uv pip install --python /opt/certauto/bin/python --constraint /tmp/constraints.txt \
        ${PLUGIN_INDEX_URL:+--default-index "${PLUGIN_INDEX_URL}"} ${requirements}

# Fail the build when a plugin cannot be loaded or two plugins register the same type.
RUN /opt/certauto/bin/python -c "from certauto_core.plugins.manager import PluginManager as M; \
m = M(); m.load_entry_points(); m.destination_types(); \
assert not m.failures, [str(f) for f in m.failures]" \
 && /opt/certauto/bin/certauto plugins

# ------------------------------------------------------------------------------ run
FROM ${PYTHON_IMAGE}

ARG PLUGINS="certauto-reflector"
LABEL org.opencontainers.image.title="certauto" \
      org.opencontainers.image.description="CertAuto: one CertificateBinding, one TLS certificate, many destinations" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sanorg/certauto" \
      in.sanorg.certauto.plugins="${PLUGINS}"

# Only the virtualenv: no compiler, no uv, no build files, no source tree.
COPY --from=builder /opt/certauto /opt/certauto

ENV PATH="/opt/certauto/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

# A numeric user, so Kubernetes can check runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["certauto"]
CMD ["run"]

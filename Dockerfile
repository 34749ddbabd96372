# pod-identity-dns image: a venv built from pinned dependencies, run as a
# non-root numeric user on a read-only root filesystem.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first: this layer is reused while only the code changes.
COPY constraints.txt ./
RUN pip install --no-cache-dir --requirement constraints.txt

COPY pyproject.toml README.md ./
COPY server/ server/
RUN pip install --no-cache-dir --no-deps --constraint constraints.txt . \
    && pip check \
    && pip uninstall --yes pip setuptools \
    && python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv


FROM python:3.11-slim

LABEL org.opencontainers.image.title="pod-identity-dns" \
      org.opencontainers.image.description="Authoritative DNS for Kubernetes pod identities" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# The root filesystem is read-only at run time: compile the stdlib now.
RUN python -m compileall -q -j 0 /usr/local/lib/python3.11

COPY --from=build /opt/venv /opt/venv

USER 65532:65532

EXPOSE 1053/udp 1053/tcp 9153

ENTRYPOINT ["pod-identity-dns"]
CMD ["serve", "--config", "/etc/pod-identity-dns/config.yaml"]

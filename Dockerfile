# Songbird controller image: the package installed into a virtualenv in a build stage, copied into a clean
# slim runtime that runs as the non-root user 65532 (the uid the Helm chart's securityContext expects).
# Build from the repository root:  docker build -t songbird:0.1.0 .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY analysis ./analysis
COPY controller ./controller
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["songbird"]
CMD ["run"]

# One image for every pipeline step and for the model server.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Kubernetes ignores it (the ServingRuntime's readiness and liveness probes check the server), and the same image runs pipeline steps, which serve nothing
# Its tag is defined once, in src/skewless/image.py; `make image` builds it under that tag.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src src
COPY components components
COPY pipelines pipelines
COPY serving serving
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
# A fixed non-root user with a high uid (no clash with host users): pods run as 10001.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin skewless
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/home/skewless
USER 10001:10001
WORKDIR /home/skewless
EXPOSE 8080 8081
# KFP steps set their own command (python3 -m kfp.dsl.executor_main ...); this is for serving.
ENTRYPOINT ["skewless"]
CMD ["serve", "--help"]

# taskforce as a container's init (PID 1), in the place of tini or s6-overlay: it reaps
# every orphan, stops the tasks its own way on `docker stop` (SIGTERM: stop commands,
# stop_timeout, then SIGKILL) and exits 0; with --exit-with TASK the container ends when
# its main task does, with that task's exit status. See README.md, "Container".
#
#   docker build -t taskforce .
#   docker run --rm -v "$PWD/taskforce.conf:/etc/taskforce/taskforce.conf:ro" taskforce
#   docker run --rm -v ... taskforce --exit-with app      # flags are added to the command

# Wheels: taskforce's (with its C extension, hence the compiler) and its dependencies'.
FROM python:3.11-slim AS wheels
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN pip wheel --no-cache-dir --wheel-dir /wheels /src

# The image: no compiler, no build tools, a user of its own.
FROM python:3.11-slim
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels taskforce \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/taskforce taskforce \
    && mkdir -p /etc/taskforce
USER taskforce
WORKDIR /home/taskforce
# Logging to stderr (no syslog in a container) and no pidfile; the control socket is in
# /tmp/taskforce-10001 (`docker exec CONTAINER taskforce status` finds it).
ENTRYPOINT ["taskforce", "-e", "-p", "-", "-f", "/etc/taskforce/taskforce.conf"]

"""The stream engine: the event log, publishing, the hub, following other processes, the seam.

- `names`: channel names, built and parsed here only.
- `log`: the stored event log every stream resumes from.
- `publish`: telling every process's streams that events were committed (no server imported).
- `hub`: each process's hub, which owns every open stream's loop and writes to its outlet.
- `follow`: the hub's background loops that hear of other processes' events (log poll, Redis).
- `seam`: the only module touching Daphne, Twisted or Django internals, with a start-up check
  that falls back to their public APIs.

Importing this package, `names`, `log` or `publish` loads no web server.
"""

"""The stream engine: the event log, publishing, the hub, following other processes, the seam.

- `names`: channel names, built and parsed here only.
- `log`: the stored event log every stream resumes from, and its Redis message form.
- `publish`: telling every process's streams that events were committed (no server imported).
- `hub`: each process's hub, which owns every open stream's loop and writes to its outlet.
- `follow`: the hub's background loops that hear of other processes' events (log poll, Redis).
- `outlet`: where a stream's bytes go, one write call per batch (server-neutral).
- `pool`: the streams' database thread pool.
- `collector`: short garbage-collector pauses with many streams open (freezes only when nothing is in flight).
- `seam`: the only module touching Daphne, Twisted or Django internals, with a start-up check
  that falls back to their public APIs.

Only `seam` imports a web server; nothing in the package imports `seam` (the views and
`project/` do), so publishing loads no server, and the modules import each other without cycles.
"""

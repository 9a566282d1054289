"""An HTTP server for editors and scripts: fill holes, generate workflows, score text.

  python -m fimjax.serve --model PATH [--port 8000] [--host 127.0.0.1] [--step N]
                         [--max_batch 8] [--max_request_bytes 1000000]

The endpoints and batching: `fimjax.serve` (docs/serve.md).
"""

import sys

from absl import flags

from fimjax import api
from fimjax import serve
from fimjax.cli import common

PROG = "python -m fimjax.serve"


def define(fv: flags.FlagValues) -> None:
  common.model_flags(fv, primary="model")
  common.number(fv, "port", 8000, "TCP port (0: any free one)", low=0, high=65535)
  flags.DEFINE_string("host", "127.0.0.1", "address to bind", flag_values=fv)
  common.number(
    fv, "max_batch", 8, "infill requests filled by one sampler call at most", low=1, high=256
  )
  common.number(fv, "max_request_bytes", 1_000_000, "largest request body", low=1)


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  try:
    model = api.load(fv.model, step=fv.step)
  except (FileNotFoundError, ValueError) as e:
    common.error(common.first_line(e))
    return 1
  try:
    server = serve.Server(
      model,
      host=fv.host,
      port=fv.port,
      max_batch=fv.max_batch,
      max_request_bytes=fv.max_request_bytes,
    )
  except OSError as e:
    common.error(
      f"--host {fv.host} --port {fv.port}: {e.strerror}; pick another --port (0: any free one)"
    )
    return 2
  print(f"serving {model.path} (step {model.step}) on {server.url}", file=sys.stderr, flush=True)
  server.worker.thread.start()
  try:
    server.httpd.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.httpd.server_close()
    server.worker.stop()
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("model",))

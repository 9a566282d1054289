"""Parts of generated workflows: triggers, matrices, services, artifact steps and job assembly."""

from fimjax.synthetic.ecosystems import Ctx
from fimjax.synthetic.emit import COMMENT, Q, Tail

OSES = ["ubuntu-latest", "macos-latest", "windows-latest"]
BRANCH_SETS = [
  ["main"],
  ["main"],
  ["master"],
  ["main", "develop"],
  ["main", "release/**"],
  ["main", "master"],
]


def cron(c: Ctx) -> Tail | str:
  m, h = c.r.randrange(60), c.r.randrange(24)
  form, note = c.pick(
    [
      (f"{m} {h} * * *", "daily"),
      (f"{m} {h} * * {c.r.randrange(7)}", "weekly"),
      (f"{m} */{c.pick([4, 6, 12])} * * *", "every few hours"),
      (f"{m} {h} 1 * *", "monthly"),
      (f"{m} {h} * * 1-5", "weekdays"),
      ("0 0 * * *", "at midnight UTC"),
    ]
  )
  form = Q(form) if c.p(0.85) else form
  return Tail(form, note) if c.p(0.3) else form


def push_pr(c: Ctx, branches: list[str], paths: bool, manifest: str = "") -> dict:
  on: dict = {}
  push: dict = {"branches": branches} if c.p(0.85) else {}
  if paths and c.p(0.3):
    key = c.pick(["paths", "paths-ignore"])
    pool = (
      ["**.md", "docs/**"]
      if key == "paths-ignore"
      else ["src/**", "tests/**", manifest, ".github/workflows/**"]
    )
    push[key] = c.sample(pool, c.r.randint(1, len(pool)))
  on["push"] = push or None
  pr: dict = {}
  if c.p(0.6):
    pr["branches"] = branches[:1] if c.p(0.5) else branches
  if c.p(0.1):
    pr["types"] = ["opened", "synchronize", "reopened"]
  if "paths" in push and c.p(0.7):
    pr["paths"] = push["paths"]
  on["pull_request"] = pr or None
  if c.p(0.2):
    on = dict(reversed(list(on.items())))
  return on


def triggers(c: Ctx, kind: str, manifest: str):
  branches = c.pick(BRANCH_SETS)
  if kind == "ci":
    if c.p(0.1):
      return c.pick(["push", ["push", "pull_request"], ["pull_request", "push"]])
    on = push_pr(c, branches, paths=True, manifest=manifest)
    if c.p(0.15):
      on["schedule"] = [{"cron": cron(c)}]
    if c.p(0.25):
      on["workflow_dispatch"] = None
    return on
  if kind == "release":
    return c.pick(
      [
        {"release": {"types": [c.pick(["published", "created"])]}},
        {"push": {"tags": [c.pick(["v*", "v*.*.*", "*"])]}},
        {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}, "workflow_dispatch": None},
      ]
    )
  if kind in ("docker", "pages"):
    on = {"push": {"branches": branches[:1]}}
    if kind == "docker" and c.p(0.6):
      on["push"]["tags"] = ["v*"]
    if c.p(0.5):
      on["pull_request"] = {"branches": branches[:1]} if c.p(0.5) else None
    if c.p(0.5):
      on["workflow_dispatch"] = None
    return on
  if kind == "scheduled":
    on = {"schedule": [{"cron": cron(c)} for _ in range(c.pick([1, 1, 1, 2]))]}
    if c.p(0.7):
      on["workflow_dispatch"] = None
    return on
  if kind == "deploy":
    inputs = {
      "environment": {
        "description": "Environment to deploy to",
        "required": True,
        "type": "choice",
        "options": ["staging", "production"],
        "default": "staging",
      }
    }
    if c.p(0.6):
      inputs["ref"] = {
        "description": "Branch, tag or SHA to deploy",
        "required": False,
        "type": "string",
        "default": branches[0],
      }
    if c.p(0.4):
      inputs["dry-run"] = {
        "description": "Show what would change",
        "type": "boolean",
        "default": False,
      }
    on = {"workflow_dispatch": {"inputs": inputs}}
    if c.p(0.4):
      on = {"push": {"branches": branches[:1]}, **on}
    return on
  return None  # reusable: built by _reusable


def runner(c: Ctx) -> str:
  return c.pick(["ubuntu-latest"] * 8 + ["ubuntu-22.04", "ubuntu-24.04"])


def make_job(c: Ctx, steps: list, runs_on, **kw) -> dict:
  """A job mapping in one of the usual key orders."""
  j: dict = {}
  if kw.get("name"):
    j["name"] = kw.pop("name")
  early = c.p(0.5)
  for k in ("needs", "if"):
    if early and kw.get(k):
      j[k] = kw.pop(k)
  j["runs-on"] = runs_on
  for k in (
    "needs",
    "if",
    "permissions",
    "environment",
    "timeout-minutes",
    "continue-on-error",
    "strategy",
    "services",
    "outputs",
    "env",
    "defaults",
  ):
    if kw.get(k) is not None and kw.get(k) != {}:
      j[k] = kw.pop(k)
  j["steps"] = annotate(c, steps)
  return j


def matrix_for(c: Ctx, e) -> tuple[dict | None, str, str]:
  """(strategy, runs-on, version expression) for a test job."""
  if c.p(0.3):
    return None, runner(c), e.default_version()
  m: dict = {}
  os_axis = c.p(0.5)
  vkey = {"python": "python-version", "node": "node-version", "go": "go-version"}.get(e.key, e.key)
  if c.p(0.3):
    vkey = c.pick(["version", e.key if e.key != "dotnet" else "dotnet-version"])
  if os_axis:
    m["os"] = c.sample(OSES, c.pick([2, 3, 3]))
  vs = (
    e.versions[-c.r.randint(2, len(e.versions)) :]
    if not os_axis or c.p(0.7)
    else [e.default_version()]
  )
  m[vkey] = vs
  if os_axis and len(vs) > 1 and c.p(0.25):
    m["exclude"] = [{"os": m["os"][-1], vkey: vs[0]}]
  elif c.p(0.12):
    m["include"] = [
      {"os": m["os"][0], "experimental": True} if os_axis else {vkey: vs[-1], "coverage": True}
    ]
  strategy: dict = {}
  if c.p(0.4):
    strategy["fail-fast"] = False
  if c.p(0.08):
    strategy["max-parallel"] = c.pick([2, 4])
  strategy["matrix"] = m
  runs_on = "${{ matrix.os }}" if os_axis else runner(c)
  return strategy, runs_on, "${{ matrix." + vkey + " }}"


def services(c: Ctx) -> tuple[dict, dict]:
  svc, env = {}, {}
  if c.p(0.7):
    db = c.pick(["postgres", "postgres", "mysql"])
    if db == "postgres":
      svc["postgres"] = {
        "image": c.pick(["postgres:15", "postgres:16", "postgres:16-alpine"]),
        "env": {
          "POSTGRES_USER": "postgres",
          "POSTGRES_PASSWORD": "postgres",
          "POSTGRES_DB": "test",
        },
        "ports": ["5432:5432"],
        "options": "--health-cmd pg_isready --health-interval 10s --health-timeout 5s "
        "--health-retries 5",
      }
      env["DATABASE_URL"] = "postgres://postgres:postgres@localhost:5432/test"
    else:
      svc["mysql"] = {
        "image": "mysql:8.0",
        "env": {"MYSQL_ROOT_PASSWORD": "root", "MYSQL_DATABASE": "test"},
        "ports": ["3306:3306"],
        "options": '--health-cmd="mysqladmin ping" --health-interval=10s --health-timeout=5s '
        "--health-retries=3",
      }
      env["DATABASE_URL"] = "mysql://root:root@127.0.0.1:3306/test"
  if not svc or c.p(0.4):
    svc["redis"] = {"image": c.pick(["redis", "redis:7", "redis:7-alpine"]), "ports": ["6379:6379"]}
    if c.p(0.6):
      svc["redis"]["options"] = (
        '--health-cmd "redis-cli ping" --health-interval 10s --health-timeout 5s --health-retries 5'
      )
    env["REDIS_URL"] = "redis://localhost:6379"
  return svc, env


def upload_step(c: Ctx, name: str, path: str, if_: str = "") -> dict:
  w = {"name": name, "path": path}
  if c.p(0.3):
    w["retention-days"] = c.pick([1, 5, 7, 14, 30])
  if c.p(0.1):
    w["if-no-files-found"] = "error"
  return c.step(
    "Upload artifact",
    uses=c.pick(["actions/upload-artifact@v4"] * 4 + ["actions/upload-artifact@v3"]),
    with_=w,
    if_=if_,
  )


def download_step(c: Ctx, name: str, path: str) -> dict:
  return c.step(
    "Download artifact", uses="actions/download-artifact@v4", with_={"name": name, "path": path}
  )


_NOTES = [
  ("actions/checkout", ["Check out the repository", "Full history is needed for tags"]),
  ("cache", ["Reuse downloaded dependencies between runs", "Cache key changes with the lock file"]),
  ("upload-artifact", ["Keep the output for the next job", "Kept for debugging failed runs"]),
  ("test", ["Run the test suite", "Tests must pass before anything is published"]),
  ("install", ["Install the project and its dev dependencies", "Pinned in the lock file"]),
  ("lint", ["Fail fast on style issues", "Same checks as the pre-commit hooks"]),
]


def annotate(c: Ctx, steps: list[dict]) -> list[dict]:
  """Put a comment above some steps, as people do."""
  for i, s in enumerate(steps):
    if COMMENT not in s and c.p(c.comment_p):
      text = " ".join(str(s.get(k, "")) for k in ("uses", "run", "name")).lower()
      for key, notes in _NOTES:
        if key in text:
          steps[i] = {COMMENT: c.pick(notes), **s}
          break
  return steps

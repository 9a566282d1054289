"""A seeded generator of realistic GitHub Actions workflows, composed from parts.

`generate(index, seed)` gives the text of one workflow; it depends only on (seed, index), so any
document can be rebuilt alone. Kinds: CI (lint / test matrix / build), release and publish,
Docker images, GitHub Pages, scheduled runs, manual deploys and reusable workflows, for Python,
Node.js, Go, Rust, Java, Ruby, .NET, PHP and Docker.
"""

import random

from fimjax.synthetic import ecosystems as eco_mod
from fimjax.synthetic import ecosystems_more
from fimjax.synthetic.ecosystems import Ctx, lines
from fimjax.synthetic.emit import COMMENT, Style, emit, strip
from fimjax.synthetic.parts import (
  BRANCH_SETS,
  download_step,
  make_job,
  matrix_for,
  push_pr,
  runner,
  services,
  triggers,
  upload_step,
)

ECOSYSTEMS = {e.key: e for e in (eco_mod.Python, eco_mod.Node, eco_mod.Go, eco_mod.Rust)}
ECOSYSTEMS.update(ecosystems_more.ECOSYSTEMS)
ECO_WEIGHTS = {
  "python": 6,
  "node": 6,
  "go": 4,
  "rust": 3,
  "java": 3,
  "ruby": 2,
  "dotnet": 2,
  "php": 1,
}
KINDS = {
  "ci": 44,
  "release": 14,
  "docker": 10,
  "pages": 7,
  "scheduled": 9,
  "deploy": 10,
  "reusable": 6,
}
HEADERS = [
  "This workflow runs the tests on every push and pull request.",
  "Keep in sync with the Makefile targets.",
  "Build, test and (on tags) publish.",
  "See https://docs.github.com/en/actions for the syntax.",
  "Runs nightly; failures open an issue.",
]

_VERSIONS = {
  "python": "python --version\npip --version\n",
  "node": "node --version && npm --version",
  "go": "go version\ngo env\n",
  "rust": "rustc --version\ncargo --version\n",
  "java": "java -version",
  "ruby": "ruby -v\nbundle -v\n",
  "dotnet": "dotnet --info",
  "php": "php -v\ncomposer --version\n",
}


def _test_job(c: Ctx, e, services_ok: bool = True) -> dict:
  strategy, runs_on, version = matrix_for(c, e)
  steps = [c.checkout_step(), *e.setup(version)]
  if c.p(0.2):
    steps.append(c.step("Show versions", run=_VERSIONS[e.key]))
  steps += e.install()
  inline_lint = c.p(0.3)
  if inline_lint:
    steps += e.lint()
  steps += e.test()
  if c.p(0.25):
    w = {"token": "${{ secrets.CODECOV_TOKEN }}"}
    if c.p(0.5):
      w["fail_ci_if_error"] = True
    cond = ""
    if strategy and c.p(0.6):
      first = {k: v for k, v in strategy["matrix"].items() if isinstance(v, list)}
      cond = " && ".join(f"matrix.{k} == '{v[-1]}'" for k, v in list(first.items())[:2])
    steps.append(
      c.step(
        "Upload coverage",
        uses=c.pick(["codecov/codecov-action@v4", "codecov/codecov-action@v5"]),
        with_=w,
        if_=cond,
      )
    )
  elif c.p(0.15):
    steps.append(
      upload_step(
        c, "test-results", c.pick(["test-results/", "reports/", "coverage/"]), if_="always()"
      )
    )
  svc, env = (
    services(c)
    if services_ok
    and e.key in ("python", "ruby", "node", "go", "java", "php")
    and runs_on.startswith("ubuntu")
    and c.p(0.2)
    else ({}, {})
  )
  return make_job(
    c,
    steps,
    runs_on,
    name=(f"Test ({e.label} {version})" if strategy and c.p(0.3) else None),
    strategy=strategy,
    services=svc or None,
    env=env or None,
    **{"timeout-minutes": c.pick([10, 15, 20, 30, 60]) if c.p(0.25) else None},
  )


def _lint_job(c: Ctx, e) -> dict:
  steps = [c.checkout_step(), *e.setup(e.default_version()), *e.install(), *e.lint()]
  return make_job(c, steps, runner(c), name=c.pick(["Lint", None, None]))


def _build_job(c: Ctx, e, needs) -> dict:
  steps = [
    c.checkout_step(),
    *e.setup(e.default_version()),
    *e.install(),
    *e.build(),
    upload_step(c, c.pick(["dist", "build", "artifacts", "package"]), e.artifact),
  ]
  return make_job(c, steps, runner(c), needs=needs)


def _integration_job(c: Ctx, e, needs) -> dict:
  svc, env = services(c)
  steps = [c.checkout_step(), *e.setup(e.default_version()), *e.install()]
  if c.p(0.4):
    steps.append(c.step("Wait for services", run="sleep 5"))
  steps += e.test()
  steps[-1] = dict(steps[-1], name="Run integration tests")
  return make_job(
    c,
    steps,
    "ubuntu-latest",
    needs=needs,
    services=svc,
    env=env,
    **{"timeout-minutes": c.pick([15, 20, 30])},
  )


def _all_green(c: Ctx, needs: list[str]) -> dict:
  if c.p(0.5):
    steps = [
      c.step(
        "Check all jobs",
        uses="re-actors/alls-green@release/v1",
        with_={"jobs": "${{ toJSON(needs) }}"},
      )
    ]
  else:
    steps = [
      c.step(
        "Fail if a dependency failed",
        run="exit 1",
        if_="contains(needs.*.result, 'failure') || contains(needs.*.result, 'cancelled')",
      )
    ]
  return make_job(
    c,
    steps,
    "ubuntu-latest",
    needs=needs,
    name=c.pick(["All checks passed", None]),
    **{"if": "always()"},
  )


def _ci(c: Ctx, e) -> dict:
  jobs: dict = {}
  if c.p(0.5):
    jobs[c.pick(["lint", "lint", "check", "style"])] = _lint_job(c, e)
  tname = c.pick(["test", "test", "tests", "build", "build-and-test", "unit-tests", e.key])
  jobs[tname] = _test_job(c, e)
  if e.key in ("python", "ruby", "node", "go", "java", "php") and c.p(0.2):
    jobs["integration"] = _integration_job(c, e, tname if c.p(0.6) else None)
  if c.p(0.15):
    other = ECOSYSTEMS[
      c.pick(["node", "python", "go"] if e.key != "node" else ["python", "go", "java"])
    ](c)
    jobs["frontend" if other.key == "node" else "backend"] = _test_job(c, other, services_ok=False)
  if e.build() and c.p(0.3) and "build" not in jobs:
    jobs["build"] = _build_job(c, e, list(jobs) if len(jobs) > 1 and c.p(0.5) else tname)
  if c.p(0.08):
    jobs["docker"] = make_job(
      c,
      [c.checkout_step(), *ecosystems_more.docker_steps(c, "", "ghcr.io")],
      runner(c),
      needs=tname,
    )
  if len(jobs) > 1 and c.p(0.2):
    jobs[c.pick(["all-green", "ci-ok", "check"]) if "check" not in jobs else "all-green"] = (
      _all_green(c, list(jobs))
    )
  return jobs


def _release(c: Ctx, e) -> dict:
  jobs: dict = {}
  if c.p(0.4):
    jobs["test"] = _test_job(c, e, services_ok=False)
  if c.p(0.5) and e.build():
    jobs["build"] = _build_job(c, e, "test" if jobs else None)
    name = jobs["build"]["steps"][-1]["with"]["name"]
    steps = [
      c.checkout_step(),
      *e.setup(e.default_version(), cache=False, registry=True, publish=True),
    ]
    steps.append(download_step(c, name, e.artifact.split("*")[0] or "."))
  else:
    steps = [
      c.checkout_step(depth0=e.key == "go"),
      *e.setup(e.default_version(), cache=c.p(0.5), registry=True, publish=True),
      *e.install(),
    ]
  pub, extra = e.publish()
  if not pub:
    pub = [
      *e.build(),
      c.step(
        "Create release",
        uses="softprops/action-gh-release@v2",
        force_name=True,
        with_={"files": e.artifact + ("*" if e.artifact.endswith("/") else "")},
      ),
    ]
    extra = {"permissions": {"contents": "write"}}
  needs = list(jobs) if len(jobs) > 1 else (next(iter(jobs)) if jobs else None)
  jobs[c.pick(["publish", "release", "deploy"])] = make_job(
    c, steps + pub, runner(c), needs=needs, **extra
  )
  return jobs


def _docker(c: Ctx, e) -> dict:
  jobs: dict = {}
  if c.p(0.35):
    jobs["test"] = _test_job(c, e, services_ok=False)
  registry = c.pick(["ghcr.io", "ghcr.io", "docker.io"])
  steps = [
    c.checkout_step(),
    *ecosystems_more.docker_steps(
      c, c.pick(["github.event_name != 'pull_request'", "true"]), registry
    ),
  ]
  perms = {"contents": "read", "packages": "write"} if registry == "ghcr.io" else None
  jobs[c.pick(["docker", "build-and-push", "image", "build"])] = make_job(
    c, steps, runner(c), needs="test" if jobs else None, permissions=perms
  )
  return jobs


def _pages(c: Ctx, e) -> dict:
  tool = {
    "python": ("pip install mkdocs-material", "mkdocs build --strict --site-dir site", "site"),
    "node": (None, "npm run build", c.pick(["dist", "build", "out"])),
    "ruby": (None, "bundle exec jekyll build", "_site"),
    "rust": ("cargo install mdbook", "mdbook build", "book"),
  }.get(e.key)
  if tool is None:
    e = ECOSYSTEMS["python"](c)
    tool = (
      "pip install sphinx furo",
      "sphinx-build -b html docs docs/_build/html",
      "docs/_build/html",
    )
  steps = [c.checkout_step(), *e.setup(e.default_version())]
  steps += [c.step("Install tools", run=tool[0])] if tool[0] else e.install()
  steps += [
    c.step("Build site", run=tool[1]),
    c.step("Setup Pages", uses="actions/configure-pages@v5"),
    c.step(
      "Upload Pages artifact", uses="actions/upload-pages-artifact@v3", with_={"path": tool[2]}
    ),
  ]
  deploy = c.step("Deploy to GitHub Pages", uses="actions/deploy-pages@v4", id_="deployment")
  env = {"name": "github-pages", "url": "${{ steps.deployment.outputs.page_url }}"}
  if c.p(0.5):
    return {
      "build": make_job(c, steps, runner(c)),
      "deploy": make_job(c, [deploy], runner(c), needs="build", environment=env),
    }
  return {"deploy": make_job(c, steps + [deploy], runner(c), environment=env)}


def _scheduled(c: Ctx, e) -> dict:
  job = _test_job(c, e, services_ok=False)
  if c.p(0.5):
    job["steps"].append(
      c.step(
        "Open an issue on failure",
        if_="failure()",
        run=lines(
          'gh issue create --title "Nightly build failed" --label ci \\',
          '  --body "See ${{ github.server_url }}/${{ github.repository }}/actions/runs/'
          '${{ github.run_id }}"',
        ),
        env={"GH_TOKEN": "${{ secrets.GITHUB_TOKEN }}"},
        force_name=True,
      )
    )
    job.setdefault("permissions", {"contents": "read", "issues": "write"})
  return {c.pick(["nightly", "scheduled", "test", "canary"]): job}


def _deploy(c: Ctx, e) -> dict:
  jobs: dict = {}
  if e.build() and c.p(0.5):
    jobs["build"] = _build_job(c, e, None)
  ref = "${{ inputs.ref }}"
  steps = [c.step("Checkout", uses=c.checkout, with_={"ref": ref} if c.p(0.5) else None)]
  if "build" in jobs:
    steps.append(
      download_step(c, jobs["build"]["steps"][-1]["with"]["name"], e.artifact.split("*")[0] or ".")
    )
  target = c.pick(["aws", "ssh", "kubectl", "fly"])
  if target == "aws":
    steps += [
      c.step(
        "Configure AWS credentials",
        uses="aws-actions/configure-aws-credentials@v4",
        with_={
          "role-to-assume": "${{ secrets.AWS_ROLE_ARN }}",
          "aws-region": c.pick(["us-east-1", "eu-west-1"]),
        },
      ),
      c.step("Sync to S3", run="aws s3 sync ./dist s3://${{ vars.BUCKET }}/ --delete"),
    ]
  elif target == "ssh":
    steps.append(
      c.step(
        "Deploy over SSH",
        run=lines(
          'echo "${{ secrets.DEPLOY_KEY }}" > key && chmod 600 key',
          'ssh -i key -o StrictHostKeyChecking=no deploy@${{ vars.HOST }} '
          '"cd /srv/app && ./deploy.sh ${{ github.sha }}"',
        ),
      )
    )
  elif target == "kubectl":
    steps += [
      c.step("Set up kubectl", uses="azure/setup-kubectl@v4"),
      c.step(
        "Deploy",
        run=lines(
          "echo \"${{ secrets.KUBECONFIG }}\" > kubeconfig",
          "kubectl --kubeconfig kubeconfig set image deployment/app "
          "app=ghcr.io/${{ github.repository }}:${{ github.sha }}",
          "kubectl --kubeconfig kubeconfig rollout status deployment/app --timeout=5m",
        ),
      ),
    ]
  else:
    steps += [
      c.step("Set up flyctl", uses="superfly/flyctl-actions/setup-flyctl@master"),
      c.step(
        "Deploy to Fly.io",
        run="flyctl deploy --remote-only",
        env={"FLY_API_TOKEN": "${{ secrets.FLY_API_TOKEN }}"},
      ),
    ]
  env = c.pick(
    [
      "${{ inputs.environment }}",
      {"name": "${{ inputs.environment }}", "url": "https://${{ vars.APP_HOST }}"},
    ]
  )
  jobs["deploy"] = make_job(
    c,
    steps,
    runner(c),
    needs="build" if jobs else None,
    environment=env,
    **{"timeout-minutes": c.pick([10, 15, 30]) if c.p(0.4) else None},
  )
  return jobs


def _reusable(c: Ctx, e) -> tuple[dict, dict]:
  """A workflow_call workflow (inputs, secrets), or a caller of one."""
  if c.p(0.5):
    on = {
      "workflow_call": {
        "inputs": {
          "version": {
            "description": f"{e.label} version",
            "required": False,
            "type": "string",
            "default": e.default_version(),
          }
        }
      }
    }
    if c.p(0.5):
      on["workflow_call"]["secrets"] = {"token": {"required": False}}
    job = make_job(
      c, [c.checkout_step(), *e.setup("${{ inputs.version }}"), *e.install(), *e.test()], runner(c)
    )
    return on, {"test": job}
  branches = c.pick(BRANCH_SETS)
  on = push_pr(c, branches, paths=False)
  jobs = {}
  for v in c.sample(e.versions, c.r.randint(1, 3)):
    jobs[f"test-{v.replace('.', '')}"] = {
      "uses": c.pick(["./.github/workflows/test.yml", "./.github/workflows/reusable-ci.yml"]),
      "with": {"version": v},
    }
  if c.p(0.5):
    first = next(iter(jobs.values()))
    first["secrets"] = c.pick(["inherit", {"token": "${{ secrets.CODECOV_TOKEN }}"}])
  return on, jobs


def _workflow(c: Ctx) -> tuple[dict, str]:
  kind = c.r.choices(list(KINDS), weights=list(KINDS.values()))[0]
  key = c.r.choices(list(ECO_WEIGHTS), weights=list(ECO_WEIGHTS.values()))[0]
  e = ECOSYSTEMS[key](c)
  names = {
    "ci": ["CI", "Tests", "test", f"{e.label} CI", "Build", "build-and-test", f"{e.label} package"],
    "release": ["Release", "Publish", "release", f"Publish {e.label} package"],
    "docker": ["Docker", "Docker image", "docker-publish", "Build and push image"],
    "pages": ["Docs", "Deploy docs", "GitHub Pages", "pages"],
    "scheduled": ["Nightly", "Scheduled tests", "nightly", "Weekly build"],
    "deploy": ["Deploy", "deploy", "Manual deploy", "Deploy to environment"],
    "reusable": ["Reusable tests", "CI", "Test (reusable)"],
  }[kind]
  doc: dict = {}
  if c.p(0.95):
    doc["name"] = c.pick(names)
  if kind == "reusable":
    on, jobs = _reusable(c, e)
  else:
    on = triggers(c, kind, e.manifest)
    jobs = {
      "ci": _ci,
      "release": _release,
      "docker": _docker,
      "pages": _pages,
      "scheduled": _scheduled,
      "deploy": _deploy,
    }[kind](c, e)
  doc["on"] = on
  if kind == "deploy" and c.p(0.5):
    doc["run-name"] = "Deploy ${{ inputs.ref || github.ref_name }} to ${{ inputs.environment }}"
  if kind == "pages":
    doc["permissions"] = {"contents": "read", "pages": "write", "id-token": "write"}
    doc["concurrency"] = {"group": "pages", "cancel-in-progress": c.p(0.5)}
  elif c.p(0.3):
    doc["permissions"] = c.pick(
      [{"contents": "read"}, "read-all", {"contents": "read", "pull-requests": "read"}]
    )
  if kind in ("ci", "docker") and c.p(0.3):
    doc["concurrency"] = c.pick(
      [
        {"group": "${{ github.workflow }}-${{ github.ref }}", "cancel-in-progress": True},
        {
          "group": "${{ github.workflow }}-${{ github.event.pull_request.number || github.ref }}",
          "cancel-in-progress": True,
        },
        "ci-${{ github.ref }}",
      ]
    )
  elif kind == "deploy":
    doc["concurrency"] = {"group": "deploy-${{ inputs.environment }}", "cancel-in-progress": False}
  env = {
    "python": {"PYTHONUNBUFFERED": "1", "FORCE_COLOR": "1"},
    "rust": {"CARGO_TERM_COLOR": "always"},
    "dotnet": {"DOTNET_NOLOGO": True, "DOTNET_CLI_TELEMETRY_OPTOUT": True},
    "go": {"GOFLAGS": "-mod=readonly"},
    "node": {"NODE_VERSION": "20"},
    "java": {"MAVEN_OPTS": "-Xmx2g"},
  }.get(e.key)
  if env and c.p(0.3):
    doc["env"] = env
  if c.p(0.1):
    doc["defaults"] = {"run": {"shell": "bash"}}
  if c.p(0.06):
    doc[COMMENT] = c.pick(
      ["Jobs run in parallel unless `needs` says otherwise.", "TODO: add a macOS runner"]
    )
  doc["jobs"] = jobs
  return doc, (c.pick(HEADERS) if c.p(0.12) else "")


def _build(index: int, seed: int) -> tuple[dict, str, Style]:
  rng = random.Random(f"fimjax-default-corpus:{seed}:{index}")
  st = Style(
    indent_seq=rng.random() < 0.8,
    quote=rng.choice(["'", '"']),
    quote_rate=rng.choice([0, 0, 0, 0.05, 0.15]),
    flow_lists=rng.choice([0.0, 0.5, 0.9]),
    flow_space=rng.random() < 0.2,
    blank_steps=rng.random() < 0.35,
    blank_top=rng.random() < 0.8,
    blank_jobs=rng.random() < 0.85,
    rand=rng,
  )
  doc, header = _workflow(Ctx(rng))
  return doc, header, st


def generate(index: int, seed: int = 0) -> str:
  """The text of generated workflow `index` for `seed`."""
  doc, header, st = _build(index, seed)
  return emit(doc, st, header)


def generate_with_data(index: int, seed: int = 0) -> tuple[str, dict]:
  """(text, the data it encodes as a YAML loader returns it); for checks."""
  doc, header, st = _build(index, seed)
  return emit(doc, st, header), strip(doc)

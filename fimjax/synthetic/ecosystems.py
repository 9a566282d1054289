"""Per-ecosystem building blocks (setup, cache, install, lint, test, build, publish steps).

Each ecosystem is a class built once per document (`ECOSYSTEMS[key](ctx)`), so the tool choices
it draws (pip or poetry, maven or gradle, ...) stay consistent across that document's jobs.
"""

HASH_OS = "${{ runner.os }}"


class Ctx:
  """The random source and per-document habits (how often steps get names, comments)."""

  def __init__(self, rng):
    self.r = rng
    self.name_p = rng.choice([0.0, 0.3, 0.7, 1.0, 1.0])
    self.comment_p = rng.choice([0.0, 0.0, 0.05, 0.1, 0.3])
    self.checkout = rng.choice(["actions/checkout@v4"] * 6 + ["actions/checkout@v3"])

  def p(self, prob: float) -> bool:
    return self.r.random() < prob

  def pick(self, seq):
    return self.r.choice(seq)

  def sample(self, seq, k: int) -> list:
    return sorted(self.r.sample(seq, min(k, len(seq))), key=seq.index)

  def step(
    self,
    name: str = "",
    uses: str = "",
    run: str = "",
    with_: dict | None = None,
    env: dict | None = None,
    if_: str = "",
    id_: str = "",
    force_name: bool = False,
    **extra,
  ) -> dict:
    """A step; the name is kept with the document's naming habit (or always when forced)."""
    s: dict = {}
    if name and (force_name or self.p(self.name_p)):
      s["name"] = name
    if id_:
      s["id"] = id_
    if if_:
      s["if"] = if_
    if uses:
      s["uses"] = uses
    if run:
      s["run"] = run
    for k, v in extra.items():
      s[k.replace("_", "-")] = v
    if with_:
      s["with"] = with_
    if env:
      s["env"] = env
    return s

  def checkout_step(self, depth0: bool = False) -> dict:
    w = {"fetch-depth": 0} if depth0 or self.p(0.08) else None
    if self.p(0.04):
      w = dict(w or {}, submodules="recursive")
    return self.step("Checkout" if self.p(0.6) else "Check out code", uses=self.checkout, with_=w)


def lines(*cmds: str) -> str:
  """A run script: one command stays one line, several become a `|` block."""
  cmds = [c for c in cmds if c]
  return cmds[0] if len(cmds) == 1 else "\n".join(cmds) + "\n"


def cache_step(c: Ctx, paths: list[str], key: str, restore: bool = True) -> dict:
  w = {"path": paths[0] if len(paths) == 1 else "\n".join(paths) + "\n", "key": key}
  if restore:
    w["restore-keys"] = key.split("${{ hashFiles")[0] + ("\n" if c.p(0.5) else "")
  return c.step(
    "Cache dependencies" if c.p(0.5) else "Cache",
    uses=c.pick(["actions/cache@v4"] * 4 + ["actions/cache@v3"]),
    with_=w,
  )


class Eco:
  key = ""
  label = ""
  versions: list[str] = []
  artifact = "dist/"
  manifest = "README.md"

  def __init__(self, c: Ctx):
    self.c = c

  def default_version(self) -> str:
    return self.c.pick(self.versions[-2:])

  def setup(self, version: str, cache: bool = True, **kw) -> list[dict]:
    raise NotImplementedError

  def install(self) -> list[dict]:
    return []

  def lint(self) -> list[dict]:
    return []

  def test(self) -> list[dict]:
    raise NotImplementedError

  def build(self) -> list[dict]:
    return []

  def publish(self) -> tuple[list[dict], dict]:
    """Steps that publish a package, and job-level extras (permissions, environment, ...)."""
    return [], {}


_LINT_NAMES = {
  "ruff check": "Ruff",
  "ruff format": "Check formatting",
  "black": "Black",
  "mypy": "Type check",
  "flake8": "Flake8",
  "isort": "isort",
  "npx prettier": "Check formatting",
  "npx tsc": "Type check",
}


class Python(Eco):
  key, label = "python", "Python"
  manifest = "pyproject.toml"
  versions = ["3.9", "3.10", "3.11", "3.12", "3.13"]

  def __init__(self, c):
    super().__init__(c)
    self.tool = c.pick(["pip", "pip", "pip", "poetry", "uv", "tox"])
    self.pkg = c.pick(["src", "app", "mypkg", "core", "lib", "."])

  def setup(self, version, cache=True, **_):
    c = self.c
    w = {"python-version": version}
    out = []
    if self.tool == "uv":
      out.append(
        c.step(
          "Install uv",
          uses=c.pick(["astral-sh/setup-uv@v3", "astral-sh/setup-uv@v5"]),
          with_={"enable-cache": True} if cache else None,
        )
      )
    if cache and self.tool in ("pip", "tox"):
      if c.p(0.7):
        w["cache"] = "pip"
        if c.p(0.3):
          w["cache-dependency-path"] = c.pick(
            ["requirements*.txt", "pyproject.toml", "**/requirements.txt"]
          )
      else:
        out.append(
          cache_step(c, ["~/.cache/pip"], HASH_OS + "-pip-${{ hashFiles('**/requirements*.txt') }}")
        )
    uses = c.pick(["actions/setup-python@v5"] * 4 + ["actions/setup-python@v4"])
    out.insert(
      len(out) if self.tool == "uv" else 0,
      c.step(
        f"Set up Python {version}" if "${{" in version else "Set up Python", uses=uses, with_=w
      ),
    )
    if self.tool == "poetry":
      out.append(
        c.step("Install Poetry", run=c.pick(["pipx install poetry", "pip install poetry==1.8.3"]))
      )
      if cache and c.p(0.6):
        out.append(
          cache_step(c, [".venv"], "venv-" + HASH_OS + "-${{ hashFiles('poetry.lock') }}", False)
        )
    return out

  def install(self):
    c = self.c
    run = {
      "pip": lines(
        "python -m pip install --upgrade pip",
        c.pick(
          [
            "pip install -r requirements.txt",
            'pip install -e ".[test]"',
            "pip install -e .[dev]",
            "pip install -r requirements-dev.txt",
          ]
        ),
      ),
      "poetry": lines(
        "poetry config virtualenvs.in-project true" if c.p(0.5) else "",
        c.pick(["poetry install --no-interaction", "poetry install --with dev"]),
      ),
      "uv": c.pick(["uv sync --all-extras --dev", "uv sync --frozen"]),
      "tox": "pip install tox tox-gh-actions",
    }[self.tool]
    return [c.step("Install dependencies", run=run)]

  def lint(self):
    c = self.c
    pre = {"poetry": "poetry run ", "uv": "uv run "}.get(self.tool, "")
    if c.p(0.2):
      return [c.step("Run pre-commit", uses="pre-commit/action@v3.0.1")]
    opts = [
      f"{pre}ruff check .",
      f"{pre}ruff format --check .",
      f"{pre}black --check .",
      f"{pre}mypy {self.pkg}",
      f"{pre}flake8 . --count --max-line-length=120 --statistics",
      f"{pre}isort --check-only --diff .",
    ]
    cmds = c.sample(opts, c.r.randint(1, 3))
    if pre == "":
      tools = " ".join(sorted({x.split()[0] for x in cmds}))
      return [
        c.step("Install linters", run=f"pip install {tools}"),
        *[
          c.step(
            _LINT_NAMES.get(" ".join(x.split()[:2]), _LINT_NAMES.get(x.split()[0], "Lint")), run=x
          )
          for x in cmds
        ],
      ]
    return [c.step("Lint", run=lines(*cmds))]

  def test(self):
    c = self.c
    pkg = "" if self.pkg == "." else self.pkg
    run = {
      "pip": c.pick(
        [
          "pytest",
          "pytest -q",
          f"pytest --cov={pkg or '.'} --cov-report=xml",
          "python -m pytest -v",
          "python -m unittest discover -s tests -v",
        ]
      ),
      "poetry": c.pick(["poetry run pytest", "poetry run pytest --cov --cov-report=xml"]),
      "uv": c.pick(["uv run pytest", "uv run pytest -n auto"]),
      "tox": "tox",
    }[self.tool]
    return [c.step("Run tests" if c.p(0.5) else "Test", run=run)]

  def build(self):
    c = self.c
    run = {"poetry": "poetry build", "uv": "uv build"}.get(
      self.tool, lines("python -m pip install build", "python -m build")
    )
    return [c.step("Build package", run=run)]

  def publish(self):
    c = self.c
    if c.p(0.6):
      return (
        [c.step("Publish to PyPI", uses="pypa/gh-action-pypi-publish@release/v1", force_name=True)],
        {
          "permissions": {"id-token": "write"},
          "environment": c.pick(
            [
              "pypi",
              {"name": "pypi", "url": "https://pypi.org/p/${{ github.event.repository.name }}"},
            ]
          ),
        },
      )
    return (
      [
        c.step(
          "Publish",
          run=lines("pip install twine", "twine upload dist/*"),
          env={"TWINE_USERNAME": "__token__", "TWINE_PASSWORD": "${{ secrets.PYPI_API_TOKEN }}"},
        )
      ],
      {},
    )


class Node(Eco):
  key, label = "node", "Node.js"
  manifest = "package.json"
  versions = ["18.x", "20.x", "22.x"]

  def __init__(self, c):
    super().__init__(c)
    self.pm = c.pick(["npm", "npm", "npm", "yarn", "pnpm"])
    self.artifact = c.pick(["dist/", "build/", "dist"])
    if c.p(0.4):
      self.versions = ["18", "20", "22"]

  def default_version(self):
    return self.c.pick(self.versions[-2:] + ["lts/*"])

  def setup(self, version, cache=True, registry=False, **_):
    c = self.c
    out = []
    if self.pm == "pnpm":
      out.append(
        c.step("Install pnpm", uses="pnpm/action-setup@v4", with_={"version": c.pick([8, 9])})
      )
    w = {"node-version": version}
    if cache and c.p(0.85):
      w["cache"] = self.pm
    if registry:
      w["registry-url"] = "https://registry.npmjs.org"
    out.append(
      c.step(
        f"Use Node.js {version}",
        uses=c.pick(["actions/setup-node@v4"] * 3 + ["actions/setup-node@v3"]),
        with_=w,
      )
    )
    if cache and "cache" not in w and self.pm == "npm":
      out.append(
        cache_step(c, ["~/.npm"], HASH_OS + "-node-${{ hashFiles('**/package-lock.json') }}")
      )
    return out

  def install(self):
    run = {
      "npm": "npm ci",
      "yarn": "yarn install --frozen-lockfile",
      "pnpm": "pnpm install --frozen-lockfile",
    }
    return [self.c.step("Install dependencies", run=run[self.pm])]

  def _run(self, script: str) -> str:
    return {"npm": f"npm run {script}", "yarn": f"yarn {script}", "pnpm": f"pnpm {script}"}[self.pm]

  def lint(self):
    c = self.c
    cmds = c.sample(
      [
        self._run("lint"),
        "npx prettier --check .",
        c.pick(["npx tsc --noEmit", self._run("typecheck")]),
      ],
      c.r.randint(1, 2),
    )
    return [
      c.step(
        _LINT_NAMES.get(" ".join(x.split()[:2]), "Type check" if "typecheck" in x else "Lint"),
        run=x,
      )
      for x in cmds
    ]

  def test(self):
    c = self.c
    out = [
      c.step(
        "Run tests",
        run=c.pick(
          [
            self._run("test"),
            "npm test",
            self._run("test:ci"),
            "npx vitest run --coverage",
            "npx jest --ci --coverage",
          ]
        ),
        env={"CI": True} if c.p(0.2) else None,
      )
    ]
    if c.p(0.12):
      out += [
        c.step("Install Playwright browsers", run="npx playwright install --with-deps"),
        c.step("Run end-to-end tests", run="npx playwright test"),
      ]
    return out

  def build(self):
    return [self.c.step("Build", run=self._run("build"))]

  def publish(self):
    c = self.c
    cmd = c.pick(
      ["npm publish", "npm publish --access public", "npm publish --provenance --access public"]
    )
    extra = (
      {"permissions": {"contents": "read", "id-token": "write"}} if "provenance" in cmd else {}
    )
    return [
      c.step("Publish to npm", run=cmd, env={"NODE_AUTH_TOKEN": "${{ secrets.NPM_TOKEN }}"})
    ], extra


class Go(Eco):
  key, label = "go", "Go"
  manifest = "go.mod"
  versions = ["1.21", "1.22", "1.23"]
  artifact = "bin/"

  def setup(self, version, cache=True, **_):
    c = self.c
    w = {"go-version-file": "go.mod"} if version == "go.mod" else {"go-version": version}
    if not cache:
      w["cache"] = False
    elif c.p(0.2):
      w["cache-dependency-path"] = "go.sum"
    return [
      c.step(
        "Set up Go", uses=c.pick(["actions/setup-go@v5"] * 3 + ["actions/setup-go@v4"]), with_=w
      )
    ]

  def default_version(self):
    return self.c.pick(self.versions[-2:] + ["stable", "go.mod"])

  def install(self):
    return [self.c.step("Download modules", run="go mod download")] if self.c.p(0.4) else []

  def lint(self):
    c = self.c
    if c.p(0.6):
      return [
        c.step(
          "golangci-lint",
          uses=c.pick(["golangci/golangci-lint-action@v6", "golangci/golangci-lint-action@v4"]),
          with_={
            "version": c.pick(["latest", "v1.60", "v1.59"]),
            **({"args": "--timeout=5m"} if c.p(0.4) else {}),
          },
        )
      ]
    return [
      c.step("Vet", run="go vet ./..."),
      c.step("Check formatting", run='test -z "$(gofmt -l .)"'),
    ]

  def test(self):
    c = self.c
    return [
      c.step(
        "Test",
        run=c.pick(
          [
            "go test -v ./...",
            "go test -race ./...",
            "go test -race -coverprofile=coverage.out -covermode=atomic ./...",
          ]
        ),
      )
    ]

  def build(self):
    c = self.c
    return [
      c.step(
        "Build",
        run=c.pick(["go build -v ./...", "CGO_ENABLED=0 go build -o bin/ ./cmd/...", "make build"]),
      )
    ]

  def publish(self):
    c = self.c
    return (
      [
        c.step(
          "Run GoReleaser",
          uses="goreleaser/goreleaser-action@v6",
          force_name=True,
          with_={"distribution": "goreleaser", "version": "~> v2", "args": "release --clean"},
          env={"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"},
        )
      ],
      {"permissions": {"contents": "write"}},
    )


class Rust(Eco):
  key, label = "rust", "Rust"
  manifest = "Cargo.toml"
  versions = ["stable", "beta", "nightly"]
  artifact = "target/release/"

  def default_version(self):
    return "stable"

  def setup(self, version, cache=True, components="", **_):
    c = self.c
    if c.p(0.75):
      uses = (
        f"dtolnay/rust-toolchain@{version}"
        if version in self.versions and c.p(0.7)
        else "dtolnay/rust-toolchain@master"
      )
      w = {} if uses.endswith(version) else {"toolchain": version}
      if components:
        w["components"] = components
      out = [c.step("Install Rust toolchain", uses=uses, with_=w or None)]
    else:
      out = [
        c.step(
          "Install Rust",
          run=f"rustup toolchain install {version} --profile minimal"
          + (f" --component {components}" if components else "")
          + f"\nrustup default {version}\n",
        )
      ]
    if cache:
      if c.p(0.7):
        out.append(c.step("Cache cargo", uses="Swatinem/rust-cache@v2"))
      else:
        out.append(
          cache_step(
            c,
            ["~/.cargo/registry", "~/.cargo/git", "target"],
            HASH_OS + "-cargo-${{ hashFiles('**/Cargo.lock') }}",
          )
        )
    return out

  def lint(self):
    c = self.c
    return [
      c.step("Check formatting", run="cargo fmt --all -- --check"),
      c.step(
        "Clippy",
        run=c.pick(
          [
            "cargo clippy --all-targets --all-features -- -D warnings",
            "cargo clippy --workspace -- -D warnings",
          ]
        ),
      ),
    ]

  def test(self):
    c = self.c
    if c.p(0.15):
      return [
        c.step("Install nextest", uses="taiki-e/install-action@nextest"),
        c.step("Run tests", run="cargo nextest run --workspace"),
      ]
    return [
      c.step(
        "Run tests",
        run=c.pick(
          ["cargo test --verbose", "cargo test --all-features", "cargo test --workspace --locked"]
        ),
      )
    ]

  def build(self):
    return [
      self.c.step(
        "Build", run=self.c.pick(["cargo build --verbose", "cargo build --release --locked"])
      )
    ]

  def publish(self):
    c = self.c
    return [
      c.step(
        "Publish to crates.io",
        run="cargo publish" + (" --locked" if c.p(0.5) else ""),
        env={"CARGO_REGISTRY_TOKEN": "${{ secrets.CARGO_REGISTRY_TOKEN }}"},
      )
    ], {}

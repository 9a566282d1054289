"""More ecosystems (Java, Ruby, .NET, PHP) and the Docker image steps."""

from fimjax.synthetic.ecosystems import HASH_OS, Ctx, Eco, cache_step, lines


class Java(Eco):
  key, label = "java", "Java"
  manifest = "pom.xml"
  versions = ["11", "17", "21"]

  def __init__(self, c):
    super().__init__(c)
    self.tool = c.pick(["maven", "maven", "gradle", "gradle"])
    self.dist = c.pick(["temurin", "temurin", "temurin", "zulu", "corretto", "adopt"])
    self.artifact = "target/*.jar" if self.tool == "maven" else "build/libs/*.jar"
    self.manifest = "pom.xml" if self.tool == "maven" else "build.gradle*"
    self.mvn = c.pick(["mvn -B", "mvn -B -ntp", "./mvnw -B"])

  def setup(self, version, cache=True, publish=False, **_):
    c = self.c
    w = {"java-version": version, "distribution": self.dist}
    if cache and (self.tool == "maven" or c.p(0.5)):
      w["cache"] = self.tool
    if publish and self.tool == "maven":
      w["server-id"] = c.pick(["ossrh", "central", "github"])
    out = [
      c.step(
        f"Set up JDK {version}",
        uses=c.pick(["actions/setup-java@v4"] * 3 + ["actions/setup-java@v3"]),
        with_=w,
      )
    ]
    if self.tool == "gradle":
      if "cache" not in w and c.p(0.8):
        out.append(
          c.step(
            "Setup Gradle",
            uses=c.pick(["gradle/actions/setup-gradle@v4", "gradle/actions/setup-gradle@v3"]),
          )
        )
      if c.p(0.3):
        out.append(c.step("Make gradlew executable", run="chmod +x ./gradlew"))
    return out

  def lint(self):
    c = self.c
    if self.tool == "maven":
      return [
        c.step("Check style", run=f"{self.mvn} {c.pick(['spotless:check', 'checkstyle:check'])}")
      ]
    return [
      c.step("Lint", run=f"./gradlew {c.pick(['spotlessCheck', 'ktlintCheck', 'checkstyleMain'])}")
    ]

  def test(self):
    c = self.c
    if self.tool == "maven":
      return [
        c.step(
          "Build with Maven",
          run=f"{self.mvn} {c.pick(['verify', 'test', 'package --file pom.xml'])}",
        )
      ]
    return [
      c.step(
        "Build with Gradle",
        run=c.pick(["./gradlew build", "./gradlew check", "./gradlew test --no-daemon"]),
      )
    ]

  def build(self):
    c = self.c
    cmd = f"{self.mvn} package -DskipTests" if self.tool == "maven" else "./gradlew assemble"
    return [c.step("Package", run=cmd)]

  def publish(self):
    c = self.c
    cmd = f"{self.mvn} deploy -DskipTests" if self.tool == "maven" else "./gradlew publish"
    return (
      [c.step("Publish package", run=cmd, env={"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"})],
      {"permissions": {"contents": "read", "packages": "write"}},
    )


class Ruby(Eco):
  key, label = "ruby", "Ruby"
  manifest = "Gemfile.lock"
  versions = ["3.1", "3.2", "3.3"]
  artifact = "*.gem"

  def __init__(self, c):
    super().__init__(c)
    self.rails = c.p(0.35)
    self.bundler_cache = c.p(0.85)

  def default_version(self):
    return self.c.pick(self.versions[-2:] + [".ruby-version"])

  def setup(self, version, cache=True, **_):
    w = {"ruby-version": version}
    if cache and self.bundler_cache:
      w["bundler-cache"] = True
    return [self.c.step("Set up Ruby", uses="ruby/setup-ruby@v1", with_=w)]

  def install(self):
    c = self.c
    out = [] if self.bundler_cache else [c.step("Install gems", run="bundle install --jobs 4")]
    if self.rails:
      out.append(
        c.step(
          "Set up database",
          run=c.pick(["bin/rails db:create db:schema:load", "bin/rails db:setup"]),
        )
      )
    return out

  def lint(self):
    c = self.c
    return [
      c.step(
        "Lint",
        run=c.pick(
          ["bundle exec rubocop", "bundle exec rubocop --parallel", "bundle exec standardrb"]
        ),
      )
    ]

  def test(self):
    c = self.c
    if self.rails:
      return [
        c.step(
          "Run tests", run=c.pick(["bin/rails test", "bundle exec rspec", "bin/rails test:all"])
        )
      ]
    return [
      c.step(
        "Run tests", run=c.pick(["bundle exec rake", "bundle exec rspec", "bundle exec rake test"])
      )
    ]

  def build(self):
    return [self.c.step("Build gem", run="gem build *.gemspec")]

  def publish(self):
    c = self.c
    return (
      [
        c.step(
          "Push to RubyGems",
          run=lines("gem build *.gemspec", "gem push *.gem"),
          env={"GEM_HOST_API_KEY": "${{ secrets.RUBYGEMS_API_KEY }}"},
        )
      ],
      {},
    )


class Dotnet(Eco):
  key, label = "dotnet", ".NET"
  manifest = "**/*.csproj"
  versions = ["6.0.x", "7.0.x", "8.0.x"]
  artifact = "out/"

  def __init__(self, c):
    super().__init__(c)
    self.conf = c.pick(["Release", "Release", "Debug"])

  def setup(self, version, cache=True, **_):
    c = self.c
    out = [
      c.step(
        "Setup .NET",
        uses=c.pick(["actions/setup-dotnet@v4", "actions/setup-dotnet@v3"]),
        with_={"dotnet-version": version},
      )
    ]
    if cache and c.p(0.5):
      out.append(
        cache_step(c, ["~/.nuget/packages"], HASH_OS + "-nuget-${{ hashFiles('**/*.csproj') }}")
      )
    return out

  def install(self):
    return [self.c.step("Restore dependencies", run="dotnet restore")]

  def lint(self):
    return [self.c.step("Check formatting", run="dotnet format --verify-no-changes")]

  def test(self):
    c = self.c
    return [
      c.step("Build", run=f"dotnet build --no-restore --configuration {self.conf}"),
      c.step(
        "Test",
        run=c.pick(
          [
            f"dotnet test --no-build --configuration {self.conf} --verbosity normal",
            f"dotnet test --no-build -c {self.conf} --logger trx",
          ]
        ),
      ),
    ]

  def build(self):
    c = self.c
    return [
      c.step(
        "Publish",
        run=c.pick([f"dotnet publish -c {self.conf} -o out", f"dotnet pack -c {self.conf} -o out"]),
      )
    ]

  def publish(self):
    c = self.c
    return [
      c.step("Pack", run=f"dotnet pack -c {self.conf} -o out"),
      c.step(
        "Push to NuGet",
        run='dotnet nuget push "out/*.nupkg" --api-key ${{ secrets.NUGET_API_KEY }} '
        "--source https://api.nuget.org/v3/index.json --skip-duplicate",
      ),
    ], {}


class Php(Eco):
  key, label = "php", "PHP"
  manifest = "composer.json"
  versions = ["8.1", "8.2", "8.3"]
  artifact = "build/"

  def setup(self, version, cache=True, **_):
    c = self.c
    w = {"php-version": version}
    if c.p(0.5):
      w["extensions"] = c.pick(["mbstring, intl", "mbstring, pdo_sqlite", "intl, zip"])
    if c.p(0.5):
      w["coverage"] = c.pick(["none", "xdebug", "pcov"])
    out = [c.step("Setup PHP", uses="shivammathur/setup-php@v2", with_=w)]
    if cache and c.p(0.5):
      out.append(cache_step(c, ["vendor"], HASH_OS + "-php-${{ hashFiles('**/composer.lock') }}"))
    return out

  def install(self):
    c = self.c
    if c.p(0.3):
      return [c.step("Install dependencies", uses="ramsey/composer-install@v3")]
    return [c.step("Install dependencies", run="composer install --prefer-dist --no-progress")]

  def lint(self):
    return [
      self.c.step(
        "Static analysis",
        run=self.c.pick(
          [
            "vendor/bin/phpstan analyse",
            "vendor/bin/psalm",
            "vendor/bin/php-cs-fixer fix --dry-run --diff",
          ]
        ),
      )
    ]

  def test(self):
    return [self.c.step("Run test suite", run=self.c.pick(["vendor/bin/phpunit", "composer test"]))]


ECOSYSTEMS = {e.key: e for e in (Java, Ruby, Dotnet, Php)}


def docker_steps(c: Ctx, push: str, registry: str) -> list[dict]:
  """Build (and push when `push` is a truthy expression) an image with buildx."""
  image = {
    "ghcr.io": "ghcr.io/${{ github.repository }}",
    "docker.io": "${{ secrets.DOCKERHUB_USERNAME }}/" + c.pick(["app", "api", "web", "server"]),
  }[registry]
  login = (
    {
      "registry": registry,
      "username": "${{ github.actor }}",
      "password": "${{ secrets.GITHUB_TOKEN }}",
    }
    if registry == "ghcr.io"
    else {
      "username": "${{ secrets.DOCKERHUB_USERNAME }}",
      "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }
  )
  out = []
  multi = c.p(0.4)
  if multi:
    out.append(c.step("Set up QEMU", uses="docker/setup-qemu-action@v3"))
  out.append(c.step("Set up Docker Buildx", uses="docker/setup-buildx-action@v3"))
  if push:
    out.append(
      c.step(
        "Log in to registry",
        uses="docker/login-action@v3",
        with_=login,
        if_="github.event_name != 'pull_request'" if push != "true" else "",
      )
    )
  tags = None
  if c.p(0.6):
    tags_cfg = c.pick(
      [
        "type=ref,event=branch\ntype=semver,pattern={{version}}\ntype=sha\n",
        "type=ref,event=branch\ntype=ref,event=pr\ntype=semver,pattern={{major}}.{{minor}}\n",
        "type=sha\ntype=raw,value=latest,enable={{is_default_branch}}\n",
      ]
    )
    out.append(
      c.step(
        "Docker metadata",
        uses="docker/metadata-action@v5",
        id_="meta",
        force_name=c.p(0.5),
        with_={"images": image, "tags": tags_cfg},
      )
    )
    tags = "${{ steps.meta.outputs.tags }}"
  w = {"context": "."}
  if c.p(0.2):
    w["file"] = c.pick(["./Dockerfile", "docker/Dockerfile"])
  if multi:
    w["platforms"] = "linux/amd64,linux/arm64"
  w["push"] = True if push == "true" else ("${{ " + push + " }}" if push else False)
  w["tags"] = tags or f"{image}:latest"
  if tags:
    w["labels"] = "${{ steps.meta.outputs.labels }}"
  if c.p(0.6):
    w["cache-from"] = "type=gha"
    w["cache-to"] = "type=gha,mode=max"
  out.append(
    c.step(
      "Build and push" if push else "Build image",
      force_name=True,
      uses=c.pick(["docker/build-push-action@v6", "docker/build-push-action@v5"]),
      with_=w,
    )
  )
  return out

# The two commands a fresh machine needs: `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
TEST_DATABASE_URL ?= mysql://root@127.0.0.1:3306/console
ADMIN_USER ?= admin

.PHONY: run test engine venv venv-dev assets messages lint check-migrations pytest clean screenshots

.venv/.stamp-run: pyproject.toml constraints.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -c constraints.txt -e .
	touch $@

.venv/.stamp-dev: .venv/.stamp-run
	.venv/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: .venv/.stamp-run
venv-dev: .venv/.stamp-dev

# Front-end assets come from npm at build time; nothing vendored is committed.
assets: package.json
	npm install --no-audit --no-fund --silent
	mkdir -p frontend/static/vendor
	cp node_modules/@picocss/pico/css/pico.min.css node_modules/htmx.org/dist/htmx.min.js frontend/static/vendor/
	cp node_modules/echarts/dist/echarts.min.js frontend/static/vendor/
	mkdir -p frontend/static/vendor/katex
	cp node_modules/marked/lib/marked.umd.js node_modules/marked/lib/marked.umd.js.map frontend/static/vendor/
	cp node_modules/dompurify/dist/purify.min.js node_modules/dompurify/dist/purify.min.js.map frontend/static/vendor/
	cp node_modules/@highlightjs/cdn-assets/highlight.min.js frontend/static/vendor/
	cp node_modules/@highlightjs/cdn-assets/styles/github.min.css frontend/static/vendor/highlight-github.min.css
	cp -r node_modules/katex/dist/katex.min.js node_modules/katex/dist/katex.min.css node_modules/katex/dist/fonts frontend/static/vendor/katex/

messages:
	$(PY) manage.py compilemessages --ignore=.venv --ignore=node_modules -v 0

run:
	deploy/scripts/ensure-services.sh
	$(MAKE) engine || echo "WARNING: no Docker engine or engine image: deployments cannot start until 'make engine' works"
	$(MAKE) venv assets
	$(MAKE) messages
	$(PY) manage.py migrate --noinput -v 0
	@# The admin line (with a generated password on the first run) is shown again under the URL.
	@admin=$$($(PY) manage.py create_platform_admin $(ADMIN_USER) --if-missing) && echo "$$admin" && \
	  CONSOLE_ADMIN_NOTE="$$admin" ADMIN_USER=$(ADMIN_USER) deploy/scripts/run-console.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

check-migrations:
	$(PY) manage.py makemigrations --check --dry-run

pytest:
	DATABASE_URL=$(TEST_DATABASE_URL) CONSOLE_ENV=test .venv/bin/pytest $(PYTEST_ARGS)

# The engine image is built once and cached (wheels, model, root filesystem under /var/cache/appliance).
engine:
	deploy/docker/ensure-dockerd.sh >/dev/null
	deploy/engine-image/build.sh

test:
	deploy/scripts/ensure-services.sh --test
	$(MAKE) engine
	$(MAKE) venv-dev assets
	$(MAKE) messages
	$(MAKE) lint check-migrations
	$(MAKE) pytest

# docs/screenshots/: main pages, both languages, desktop and phone (tests/browser/screens.py).
screenshots:
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) deploy/scripts/screenshots.sh

clean:
	rm -rf .venv node_modules frontend/static/vendor var

"""
The screenshots of docs/admin-guide.md, taken from the real admin in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/images/admin] [--only NAME ...] [--list]

It makes a hub of its own, so the pictures are the same on every machine: a temp VAR_DIR with a fresh SQLite
database, `manage.py migrate`, `manage.py seed_demo` (the demo organizations, integrations, catalog, stock
and orders), each engine run once for the demo organization (so the dashboard and the engine statuses are
filled), then gunicorn on a free 127.0.0.1 port (DEBUG and HTTPS_ONLY off, as `make run`; no Celery worker:
what the admin queues stays in the temp filesystem broker). Playwright's sync API drives the machine's
Chromium (never a downloaded browser; the launch arguments of tests/e2e/conftest.py), logs in as the demo
org admin once and walks through the guide's sections in order, one PNG each, at a 1280 px wide viewport.
The walk changes the demo data as a person would (it registers a custom integration, rotates its key, edits
an integration, switches a webhook subscription back on); `--only` writes just the named PNGs, but the walk
is the same, so each picture shows the same state as in a full run.

The demo password is read from seed_demo's output and kept in memory: it is never printed or logged. The
shown-once key page is shot with the key's text replaced by a placeholder. gunicorn is stopped at the end,
whatever happens (its process group, by PID), and the temp folder removed.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess  # noqa: RUF100, S404 - starts manage.py and gunicorn with fixed argument lists, no shell
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As tests/e2e/conftest.py launches it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 1280, 800  # the viewport; every PNG is WIDTH wide
CUT_AT = 1500  # a taller page is cut here (keeps each PNG well under 250 KB) ...
MAX_HEIGHT = 2000  # ... unless a shot asks for more, up to this
MASKED_KEY = "sy_XXXXXXXX_…"  # what the shown-once key page shows in its screenshot
ADMIN = "admin@demo.example"
MEMBER = "member@demo.example"  # seed_demo gives the demo users one password
START_TIMEOUT = 60  # seconds for gunicorn to answer

# The PNGs, in the order the walk takes them (docs/admin-guide.md references each once).
SHOTS = [
    "login",
    "dashboard",
    "integrations",
    "add_integration",
    "add_integration_settings",
    "integration",
    "integration_error",
    "mappings",
    "register_custom",
    "key_shown_once",
    "api_key",
    "api_keys",
    "products",
    "locations",
    "stock",
    "orders",
    "order_held",
    "order",
    "exceptions",
    "rules",
    "rule",
    "dry_run",
    "routing",
    "routing_card",
    "engine_settings",
    "webhook_deliveries",
    "webhook_delivery",
    "webhook_subscription",
    "history",
    "member_access",
    "member_view",
]


def log(message):
    print(f"[screenshots] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_environment(var_dir: Path) -> dict:
    """The environment of every process of the temp hub: its own SQLite file and broker folder."""
    env = dict(os.environ)
    # Whatever the caller points at (make test exports PostgreSQL, Redis, its secrets): not for this hub.
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY", "ENCRYPTION_KEYS"):
        env.pop(name, None)
    for name in ("API_KEY_PEPPERS", "SITE_URL", "CSRF_TRUSTED_ORIGINS", "BEHIND_PROXY", "ALLOWED_HOSTS"):
        env.pop(name, None)
    env.update(
        VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'switchyard.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        CELERY_TASK_ALWAYS_EAGER="false",
        DEBUG="false",
        HTTPS_ONLY="false",
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        EMAIL_URL="dummymail://",  # the exceptions engine's digest goes nowhere
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env, *args, capture=False) -> str:
    argv = [str(PYTHON), "manage.py", *args]
    done = subprocess.run(  # noqa: S603 - our own manage.py with arguments written here
        argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        # seed_demo's output may hold the password on its last line: never echo it.
        shown = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("Login: "))
        raise SystemExit(f"manage.py {args[0]} failed ({done.returncode}):\n{shown}\n{done.stderr}")
    return done.stdout if capture else ""


def prepare_hub(env) -> str:
    """Migrate, seed, run the engines once; returns the demo password (from seed_demo's Login line)."""
    started = time.monotonic()
    manage(env, "migrate", "--noinput")
    output = manage(env, "seed_demo", capture=True)
    found = re.search(r"^Login: (\S+) / (\S+)$", output, re.MULTILINE)
    if not found or found.group(1) != ADMIN:
        raise SystemExit("manage.py seed_demo printed no 'Login: admin@demo.example / …' line")
    # Each engine once, in one process (a Django start costs seconds here), so that the dashboard and the
    # engine settings show a last run. The seed's orders are seconds old: the sweeps take them at once.
    code = "\n".join(
        [
            "import django",
            "django.setup()",
            "from django.core.management import call_command",
            "for engine in ('hold', 'routing', 'inventory', 'exceptions'):",
            "    call_command('run_engine', engine, org='demo')",
        ]
    )
    argv = [str(PYTHON), "-c", code]
    engines_env = {**env, "ENGINE_LOST_MESSAGE_SECONDS": "0"}
    done = subprocess.run(  # noqa: S603 - our own Python with the code above
        argv, cwd=ROOT, env=engines_env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"running the engines failed:\n{done.stdout}\n{done.stderr}")
    log(f"hub prepared in {time.monotonic() - started:.1f} s (migrate, seed_demo, the four engines)")
    return found.group(2)


def start_server(env, port) -> subprocess.Popen:
    argv = [
        str(GUNICORN),
        "config.wsgi",
        "-c",
        str(ROOT / "config" / "gunicorn.py"),  # the access log format without user or query (#14)
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
        "--log-level",
        "warning",
    ]
    log_file = open(Path(env["VAR_DIR"]) / "gunicorn.log", "ab")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(  # noqa: S603 - gunicorn with the arguments above
        argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    server.log_file = log_file
    url = f"http://127.0.0.1:{port}/admin/login/"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: RUF100, S310 - our own server on 127.0.0.1
                return server
        except OSError:
            if server.poll() is not None:
                log_text = (Path(env["VAR_DIR"]) / "gunicorn.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"gunicorn exited ({server.returncode}):\n{log_text}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"the admin did not answer at {url} within {START_TIMEOUT} s") from None
            time.sleep(0.3)


def stop_server(server):
    """SIGTERM to gunicorn's process group (it and its workers), SIGKILL after 10 s."""
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            pass
    server.log_file.close()


# --- the walk ---------------------------------------------------------------------------------------------


class Camera:
    """Takes the named shots the caller asked for, each a PNG WIDTH wide and at most MAX_HEIGHT tall."""

    def __init__(self, out: Path, only):
        self.out, self.only, self.taken = out, set(only or SHOTS), []

    def __call__(self, page, name, *, full=True, top=None, bottom=None, cut_at=CUT_AT):
        """Shoot `page`: the viewport (full=False), else the page from `top` to `bottom` (px), cut at `cut_at`."""
        if name not in SHOTS:
            raise ValueError(f"{name!r} is not in SHOTS")
        if name not in self.only:
            return
        page.wait_for_load_state("load")
        page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring, no caret
        if full:
            page_height = page.evaluate("document.documentElement.scrollHeight")
            top = max(0, int(top or 0))
            bottom = min(page_height, int(bottom) if bottom is not None else page_height)
            height = max(HEIGHT if top == 0 else 200, min(bottom - top, cut_at, MAX_HEIGHT))
            height = min(height, page_height - top)
            clip = {"x": 0, "y": top, "width": WIDTH, "height": height}
            page.screenshot(path=self.out / f"{name}.png", full_page=True, clip=clip, animations="disabled")
        else:
            page.screenshot(path=self.out / f"{name}.png", animations="disabled")
        self.taken.append(name)
        log(f"{name}.png")


def box(page, selector):
    """The page-coordinates box of the first element matching `selector`."""
    return page.evaluate(
        """(selector) => {
            const r = document.querySelector(selector).getBoundingClientRect();
            return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY};
        }""",
        selector,
    )


def sidebar(page, open_):
    """Django's navigation sidebar: remembered in localStorage, so this holds for the pages that follow."""
    page.evaluate(
        "(v) => localStorage.setItem('django.admin.navSidebarIsOpen', v)", "true" if open_ else "false"
    )


def walk(page, base, shoot, password, browser):
    def go(path):
        page.goto(base + path)

    def open_row(changelist, text):
        go(changelist)
        page.locator("#result_list tr", has_text=text).locator("th a, td a").first.click()
        page.wait_for_load_state("load")

    # --- signing in
    go("/admin/login/")
    shoot(page, "login", full=False)
    page.fill("#id_username", ADMIN)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(base + "/admin/")

    # --- the dashboard, with the navigation sidebar; the other pages without it (more room for the content)
    sidebar(page, True)
    go("/admin/automations/dashboard/")
    shoot(page, "dashboard")
    sidebar(page, False)

    # --- integrations
    go("/admin/integrations/integration/")
    shoot(page, "integrations", full=False)
    page.click(".object-tools a.addlink")
    shoot(page, "add_integration")
    page.click("text=Choose Custom 3PL")
    page.select_option("#id_organization", label="Demo Outfitters")
    page.fill("#id_name", "North warehouse")
    page.fill("#id_notification_email", "north@partner.example")
    page.fill("#id_setting__acknowledge_within_minutes", "120")
    shoot(page, "add_integration_settings")  # not saved: the guide's other pictures keep the seed's six

    # An edit that touches no setting (one that does moves a connected integration back to connecting).
    open_row("/admin/integrations/integration/", "East warehouse")
    page.fill("#id_notification_email", "east-team@demo.example")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    shoot(page, "integration")
    top = box(page, "fieldset.module:has(.field-configuration_changes)")["top"] - 10
    shoot(page, "mappings", top=top)
    # A key for the East warehouse, revoked at once (so that the key list shows each state).
    page.click(".field-api_keys a:has-text('Issue a key')")
    page.click("input[name=_issue]")
    page.wait_for_selector("#sy-key")
    page.evaluate("(masked) => { document.querySelector('#sy-key').value = masked; }", MASKED_KEY)
    page.click("text=Go to the key")
    page.click("#sy-revoke")
    page.wait_for_selector(".messagelist")
    open_row("/admin/integrations/integration/", "West warehouse")
    shoot(page, "integration_error", bottom=box(page, "fieldset:has(.field-status_badge)")["bottom"] + 20)

    # --- a custom integration and its key: registered, shown once, then rotated
    go("/admin/integrations/integration/")
    page.click("#sy-register-custom")
    page.click("text=Register a custom 3PL")
    page.fill("#id_name", "Acme 3PL")
    page.fill("#id_notification_email", "it@acme-logistics.example")
    page.select_option("#id_expiration", "90")
    shoot(page, "register_custom")
    page.click("input[type=submit]")
    page.wait_for_selector("#sy-key")
    # The key is shown once; the screenshot shows a placeholder, never the key.
    page.evaluate("(masked) => { document.querySelector('#sy-key').value = masked; }", MASKED_KEY)
    shoot(page, "key_shown_once", full=False)
    page.click("text=Go to the key")
    shoot(page, "api_key")
    page.click("#sy-rotate")
    page.click("input[type=submit][value=Rotate]")
    page.wait_for_selector("#sy-key")
    page.evaluate("(masked) => { document.querySelector('#sy-key').value = masked; }", MASKED_KEY)
    go("/admin/tokens/apikey/")
    shoot(page, "api_keys", full=False)

    # --- catalog, locations, stock
    go("/admin/inventory/product/")
    shoot(page, "products", full=False)
    go("/admin/inventory/location/")
    shoot(page, "locations", full=False)
    go("/admin/inventory/inventorylevel/")
    shoot(page, "stock", full=False)

    # --- orders
    go("/admin/orders/order/")
    shoot(page, "orders", full=False)
    open_row("/admin/orders/order/", "#1007")
    shoot(page, "order_held", full=False)
    open_row("/admin/orders/order/", "#1004")
    shoot(page, "order", top=box(page, ".inline-group")["top"] - 10)

    # --- exceptions
    go("/admin/automations/syncexception/")
    shoot(page, "exceptions", full=False)

    # --- automation rules, routing cards, engine settings
    go("/admin/automations/automationrule/")
    shoot(page, "rules", full=False)
    open_row("/admin/automations/automationrule/", "Hold orders over 500")
    shoot(page, "rule")
    open_row("/admin/automations/automationrule/", "Tag express orders")
    page.click("text=Dry run on an order")
    page.fill("#id_order", "#1007")
    page.click("input[type=submit][value='Try it']")
    page.wait_for_selector("#sy-dry-run-result")
    shoot(page, "dry_run")
    go("/admin/automations/routingrule/")
    shoot(page, "routing", full=False)
    open_row("/admin/automations/routingrule/", "Express orders")
    shoot(page, "routing_card")
    go("/admin/automations/enginesettings/")
    shoot(page, "engine_settings")

    # --- webhooks
    go("/admin/integrations/webhookdelivery/")
    shoot(page, "webhook_deliveries", full=False)
    open_row("/admin/integrations/webhookdelivery/?status__exact=dead", "evt_demo")
    shoot(page, "webhook_delivery", cut_at=MAX_HEIGHT)
    go("/admin/integrations/webhooksubscription/")
    page.locator("#result_list tbody tr th a").first.click()
    page.click("#sy-switch-on")
    page.wait_for_selector("#sy-test-event")
    page.click("#sy-test-event")
    page.wait_for_selector(".messagelist")
    shoot(page, "webhook_subscription", full=False)

    # --- history: the change made to the East warehouse above, by whom
    open_row("/admin/integrations/integration/", "East warehouse")
    page.click(".object-tools a.historylink[href$='/history/']")
    shoot(page, "history", full=False)

    # --- members: what a member may reach, set per integration; and what the member then sees
    open_row("/admin/integrations/integration/", "Web shop")
    page.click("text=Member access")
    shoot(page, "member_access", full=False)
    member = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        member.goto(base + "/admin/login/")
        member.fill("#id_username", MEMBER)
        member.fill("#id_password", password)
        member.click("input[type=submit]")
        member.wait_for_url(base + "/admin/")
        member.goto(base + "/admin/integrations/integration/")
        shoot(member, "member_view", full=False)
    finally:
        member.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "admin"), help="folder for the PNGs")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=SHOTS, help="write only these PNGs")
    parser.add_argument("--list", action="store_true", help="print the shot names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SHOTS))
        return 0

    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    var_dir = Path(tempfile.mkdtemp(prefix="switchyard-screenshots."))
    server = None
    try:
        env = hub_environment(var_dir)
        password = prepare_hub(env)
        port = free_port()
        server = start_server(env, port)
        log(f"gunicorn (pid {server.pid}) serves the temp hub on http://127.0.0.1:{port}/admin/")
        shoot = Camera(out, args.only)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm buttons ask first
                page.set_default_timeout(15_000)
                walk(page, f"http://127.0.0.1:{port}", shoot, password, browser)
            finally:
                browser.close()
        missing = sorted(set(shoot.only) - set(shoot.taken))
        if missing:
            raise SystemExit(f"not taken: {', '.join(missing)}")
        log(f"{len(shoot.taken)} PNG(s) in {out} in {time.monotonic() - started:.0f} s")
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Users log in to reach the dashboard, each as a viewer or an operator; without credentials it stays on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from dashboards.auth import Account, hash_password, parse_users, verify_password
from tests.conftest import OUTPUT_DIR
from tests.e2e.conftest import DASHBOARD_PORT
from tests.support.devstack import DevStack, wait_until_live

PASSWORD = "correct horse battery"
LOGIN_PORT = DASHBOARD_PORT + 2


@pytest.fixture(scope="module")
def guarded(api: str, stack: DevStack) -> Iterator[str]:
    """A dashboard that needs a login (`alice`, a viewer), listening on every address."""
    env = {
        "SENDENSE_DASHBOARD_API_URL": api,
        "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token,
        "SENDENSE_DASHBOARD_PORT": str(LOGIN_PORT),
        "SENDENSE_DASHBOARD_HOST": "0.0.0.0",
        "SENDENSE_DASHBOARD_USERS": f"alice:{hash_password(PASSWORD)}",
        "SENDENSE_DASHBOARD_COOKIE_SECRET": "test-cookie-secret-0123456789abcdef",
    }
    proc = stack.start_process("dashboard", log_path=OUTPUT_DIR / "dashboard-login.log", env=env)
    url = f"http://127.0.0.1:{LOGIN_PORT}/"
    wait_until_live(f"{url}login", 30.0, proc)
    yield url
    stack.stop_process(proc)


def test_passwords_are_kept_as_scrypt_hashes():
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password("wrong", stored)
    assert hash_password(PASSWORD) != stored, "salted: the same password hashes differently"


def test_users_are_viewers_or_operators_and_entries_from_before_the_roles_are_viewers():
    stored = hash_password(PASSWORD)
    users = parse_users((f"alice:{stored}", f"jane:operator:{stored}", f"vic:viewer:{stored}"))
    assert users == {
        "alice": Account(stored, "viewer"),
        "jane": Account(stored, "operator"),
        "vic": Account(stored, "viewer"),
    }


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("jane:admin:{h}", "role 'admin' is not viewer or operator"),
        ("jane:operator:not-a-hash", "is not name:role:scrypt$"),
        (":operator:{h}", "is not name:role:scrypt$"),
        ("ja\x01ne:{h}", "is not name:role:scrypt$"),
    ],
)
def test_a_malformed_user_entry_is_refused_with_what_is_wrong(entry: str, says: str):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_users((entry.format(h=hash_password(PASSWORD)),))


def test_a_name_given_twice_is_refused():
    stored = hash_password(PASSWORD)
    with pytest.raises(ValueError, match="names 'jane' twice"):
        parse_users((f"jane:operator:{stored}", f"jane:{stored}"))


def test_without_a_login_the_dashboard_is_refused(guarded: str, page: Page):
    answer = httpx.get(guarded, follow_redirects=False)
    assert answer.status_code == 302 and answer.headers["location"].startswith("/login")
    page.goto(guarded)
    expect(page).to_have_url(f"{guarded}login?next=%2F")
    expect(page.locator(".slick-cell")).to_have_count(0)


def test_a_wrong_password_is_refused(guarded: str, page: Page):
    page.goto(f"{guarded}login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".err")).to_have_text("The user name or the password is wrong.")
    page.goto(guarded)
    expect(page).to_have_url(f"{guarded}login?next=%2F")


def test_with_a_login_the_dashboard_works_until_logout(guarded: str, page: Page):
    page.goto(guarded)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".slick-cell").first).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "sendense_operator")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(f"{guarded}logout")
    expect(page).to_have_url(f"{guarded}login")
    page.goto(guarded)
    expect(page).to_have_url(f"{guarded}login?next=%2F")


def test_a_dashboard_on_another_address_refuses_to_start_without_operators(api: str, stack: DevStack):
    log = OUTPUT_DIR / "dashboard-open.log"
    env = {"SENDENSE_DASHBOARD_HOST": "0.0.0.0", "SENDENSE_DASHBOARD_PORT": str(LOGIN_PORT + 1)}
    proc = stack.start_process("dashboard", log_path=log, env={**env, "SENDENSE_DASHBOARD_USERS": ""})
    assert proc.wait(timeout=30) == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without a login" in log.read_text()

"""Signing in and out, sessions, rate limiting and CSRF, against a real server over HTTP."""

from __future__ import annotations

import stat
import uuid

import httpx

from tests.support.servers import StowageServer
from tests.web.support import ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_of, forms_of


def test_pages_need_a_session_and_send_you_to_login(web: WebClient) -> None:
    for path in ("/", "/projects/default/settings/backup-locations", "/account", "/settings/users"):
        response = web.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    json_answer = web.post_json("/ui/projects/default/backup-locations/check", {"name": "x"}, csrf=False)
    assert json_answer.status_code == 401
    assert json_answer.json()["code"] == "unauthenticated"


def test_login_page_has_a_csrf_token_and_a_safe_session_cookie(web: WebClient) -> None:
    response = web.get("/login")
    assert response.status_code == 200
    assert csrf_of(response.text)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


def test_session_cookie_is_secure_behind_https(web_server: StowageServer) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as it would from a local TLS proxy.
    response = httpx.get(f"{web_server.url}/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in response.headers["set-cookie"].lower()


def test_sign_in_and_out(web: WebClient) -> None:
    response = web.login()
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    home = web.get("/")
    assert home.headers["location"] == "/projects/default/settings/backup-locations"
    page = web.get("/projects/default/settings/backup-locations")
    assert page.status_code == 200
    assert ADMIN_EMAIL in page.text
    stolen = dict(web.http.cookies)

    out = web.post("/logout")
    assert out.status_code == 303
    assert out.headers["location"] == "/login?notice=signed-out"
    assert web.get("/projects/default/settings/backup-locations").status_code == 303
    # The old cookie is refused too, even if someone kept a copy.
    replay = httpx.get(f"{web.server.url}/projects/default/settings/backup-locations", cookies=stolen)
    assert replay.status_code == 303


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(web: WebClient) -> None:
    web.get("/login")
    ok = web.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "next": "/account"})
    assert ok.headers["location"] == "/account"
    other = WebClient(web.server)
    other.get("/login")
    evil = other.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "next": "//evil.example/x"})
    assert evil.headers["location"] == "/"
    other.close()


def test_wrong_password_says_so_clearly(web: WebClient) -> None:
    response = web.login(password="not-the-password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert 'data-testid="login-error"' in response.text
    assert "not-the-password" not in response.text
    unknown = web.login(email=f"nobody-{uuid.uuid4().hex[:6]}@example.com", password="whatever-it-is")
    assert unknown.status_code == 401
    assert "Wrong email or password." in unknown.text


def test_login_is_rate_limited_per_email_and_address(web_server: StowageServer) -> None:
    email = f"target-{uuid.uuid4().hex[:6]}@example.com"
    admin = WebClient(web_server)
    admin.login()
    admin.get("/settings/users")
    assert (
        admin.post("/settings/users", {"email": email, "password": "a-good-password", "role": "viewer"}).status_code
        == 303
    )
    web = WebClient(web_server)
    for _ in range(5):
        assert web.login(email=email, password="wrong-password").status_code == 401
    blocked = web.login(email=email, password="a-good-password")
    assert blocked.status_code == 429
    assert "Too many failed sign-in attempts" in blocked.text
    assert "seconds" in blocked.text
    # Other accounts are not locked out by someone guessing this one.
    assert WebClient(web_server).login().status_code == 303
    admin.close()
    web.close()


def test_every_post_form_on_every_page_carries_a_csrf_token(admin: WebClient) -> None:
    from tests.web.support import create_unverified

    detail = create_unverified(admin, name=f"csrf-{uuid.uuid4().hex[:6]}")
    pages = [
        "/projects/default/settings/backup-locations",
        "/projects/default/settings/backup-locations/new",
        detail,
        detail + "/edit",
        detail + "/delete",
        "/account",
        "/settings/users",
    ]
    for path in pages:
        page = admin.get(path)
        assert page.status_code == 200, path
        posts = [tag for method, tag in forms_of(page.text) if method == "post"]
        assert posts, f"no forms on {path}"
        for tag in posts:
            assert 'name="csrf_token"' in tag, f"a form on {path} has no CSRF token: {tag[:200]}"
    login = WebClient(admin.server).get("/login").text
    assert all('name="csrf_token"' in tag for method, tag in forms_of(login) if method == "post")


def test_every_form_is_refused_without_its_csrf_token(admin: WebClient) -> None:
    from tests.web.support import create_unverified, location_form

    detail = create_unverified(admin, name=f"keep-{uuid.uuid4().hex[:6]}")
    users = admin.get("/settings/users").text
    assert ADMIN_EMAIL in users
    posts = {
        "/logout": {},
        "/account/password": {
            "current_password": ADMIN_PASSWORD,
            "new_password": "x" * 12,
            "confirm_password": "x" * 12,
        },
        "/settings/users": {"email": "csrf@example.com", "password": "a-good-password", "role": "admin"},
        f"/settings/users/{uuid.uuid4()}/delete": {},
        f"{detail}/validate": {},
        f"{detail}/default": {},
        f"{detail}/edit": {**location_form("renamed-by-csrf"), "secret_access_key": ""},
        f"{detail}/delete": {},
        "/ui/projects/default/backup-locations/check": location_form(),
        "/ui/projects/default/backup-locations/validate": location_form(),
        "/ui/projects/default/backup-locations": {**location_form("made-by-csrf"), "skip_validation": "on"},
    }
    for path, data in posts.items():
        missing = admin.post(path, data, csrf=False)
        assert missing.status_code == 403, f"{path} accepted a form without a CSRF token"
        wrong = admin.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert wrong.status_code == 403, f"{path} accepted a forged CSRF token"
        if path.startswith("/ui/"):
            assert wrong.json()["code"] == "csrf_rejected"
        else:
            assert "This form expired or did not come from a Stowage page" in wrong.text
            assert "Traceback" not in wrong.text
    # Nothing happened: still signed in, the location is unchanged and nothing was created.
    page = admin.get(detail)
    assert page.status_code == 200
    assert "renamed-by-csrf" not in page.text
    listing = admin.get("/projects/default/settings/backup-locations?search=made-by-csrf&fragment=1").text
    assert "No locations match" in listing
    assert "csrf@example.com" not in admin.get("/settings/users").text


def test_login_form_is_refused_without_csrf(web: WebClient) -> None:
    no_session = httpx.post(f"{web.server.url}/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert no_session.status_code == 403
    web.get("/login")
    forged = web.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": "forged"}, csrf=False)
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers or "stowage_session" not in forged.headers["set-cookie"]


def test_a_csrf_token_of_another_session_is_refused(web_server: StowageServer) -> None:
    alice = WebClient(web_server)
    alice.login()
    alice.get("/account")
    mallory = WebClient(web_server)
    mallory.login()
    mallory.get("/account")
    response = mallory.post("/logout", {"csrf_token": alice.csrf}, csrf=False)
    assert response.status_code == 403
    alice.close()
    mallory.close()


def test_password_change_ends_other_sessions(server_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.web.support import web_env

    srv = server_factory(extra_env=web_env())
    laptop = WebClient(srv)
    laptop.login()
    phone = WebClient(srv)
    phone.login()
    laptop.get("/account")
    mismatch = laptop.post(
        "/account/password",
        {"current_password": ADMIN_PASSWORD, "new_password": "a-new-password-1", "confirm_password": "different-1"},
    )
    assert mismatch.status_code == 422
    assert "The two new passwords differ" in mismatch.text
    wrong = laptop.post(
        "/account/password",
        {
            "current_password": "nope-nope-nope",
            "new_password": "a-new-password-1",
            "confirm_password": "a-new-password-1",
        },
    )
    assert "The current password is wrong." in wrong.text
    changed = laptop.post(
        "/account/password",
        {
            "current_password": ADMIN_PASSWORD,
            "new_password": "a-new-password-1",
            "confirm_password": "a-new-password-1",
        },
    )
    assert changed.status_code == 303
    assert laptop.get("/account").status_code == 200
    assert phone.get("/account").status_code == 303
    assert WebClient(srv).login(password="a-new-password-1").status_code == 303
    assert WebClient(srv).login().status_code == 401


def test_generated_admin_password_is_stored_0600_and_never_logged(server_factory) -> None:  # type: ignore[no-untyped-def]
    """Printed only to a terminal (not this test's log file); the log line names the file instead."""
    srv = server_factory(extra_env={"STOWAGE_SCHEDULER_ENABLED": "false"})
    path = srv.data_dir / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    email, password = path.read_text().split()
    assert email == "admin@localhost"
    log = srv.log.read_text()
    assert password not in log
    assert str(path) in log
    web = WebClient(srv)
    assert web.login(email=email, password=password).status_code == 303
    web.close()


def test_roles_limit_what_a_user_sees_and_does(admin: WebClient) -> None:
    email = f"viewer-{uuid.uuid4().hex[:6]}@example.com"
    admin.get("/settings/users")
    weak = admin.post("/settings/users", {"email": email, "password": "short", "role": "viewer"})
    assert weak.status_code == 422
    assert "at least 10 characters" in weak.text
    assert (
        admin.post("/settings/users", {"email": email, "password": "viewer-password", "role": "viewer"}).status_code
        == 303
    )
    dup = admin.post("/settings/users", {"email": email.upper(), "password": "viewer-password", "role": "viewer"})
    assert "already exists" in dup.text

    viewer = WebClient(admin.server)
    assert viewer.login(email=email, password="viewer-password").status_code == 303
    page = viewer.get("/projects/default/settings/backup-locations")
    assert page.status_code == 200
    assert "Add New Backup Location" not in page.text
    wizard = viewer.get("/projects/default/settings/backup-locations/new")
    assert wizard.status_code == 403
    assert "can look at backup locations but not add them" in wizard.text
    viewer.get("/account")
    from tests.web.support import location_form

    refused = viewer.post_json(
        "/ui/projects/default/backup-locations", {**location_form("viewer-made"), "skip_validation": "on"}
    )
    assert refused.status_code == 403
    assert viewer.get("/settings/users").status_code == 403
    viewer.close()

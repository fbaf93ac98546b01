"""No cross-site page can make a logged-in browser change anything.

The rule (pacsdash.web.base.BaseHandler.check_change_request): a POST, PUT or
DELETE passes with ``X-Requested-With`` or a body type no form can send
(application/json, STOW-RS's multipart/related); any other body type is 415;
no body type passes only for ``Authorization``-header callers not sent from
another origin, else 403. Cookies never authorise a change. Every response,
the dashboard's too, forbids framing (``frame-ancestors 'none'``).
"""

from __future__ import annotations

import requests

from tests.web.conftest import USERS, session_for

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain")
#: A body each of those types parses (a form post's own).
FORM_BODY = b'--x\r\nContent-Disposition: form-data; name="modality"\r\n\r\nx\r\n--x--\r\n'


def test_form_body_types_are_415_whoever_asks(base_url):
    url = f"{base_url}/api/studies/1.2.3.4/send"
    for content_type in FORM_TYPES:
        for auth in (None, ("editor", USERS["editor"])):
            answer = requests.post(url, data=FORM_BODY, auth=auth, timeout=30,
                                   headers={"Content-Type": content_type})
            assert answer.status_code == 415, (content_type, auth, answer.text)
        assert requests.delete(f"{base_url}/api/studies/1.2.3.4", auth=("admin", USERS["admin"]), timeout=30,
                               data=FORM_BODY, headers={"Content-Type": content_type}).status_code == 415
    stow = requests.post(f"{base_url}/dicom-web/studies", data=b"--x--", auth=("editor", USERS["editor"]),
                         headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=30)
    assert stow.status_code == 415


def test_json_and_x_requested_with_pass(base_url):
    editor = session_for("editor")
    url = f"{base_url}/api/studies/1.2.3.4/send"
    assert editor.post(url, json={"modality": "nope"}, timeout=30).status_code == 404
    assert editor.post(url, data=b'{"modality": "nope"}', timeout=30,
                       headers={"Content-Type": "text/plain", "X-Requested-With": "fetch"}).status_code == 404
    # Scripts (curl -X DELETE -u, dicomweb-client) send no body type: their Authorization header is the proof.
    assert session_for("admin").delete(f"{base_url}/api/studies/1.2.3.999", timeout=30).status_code == 404


def test_a_bodiless_change_from_another_origin_is_403(base_url):
    url = f"{base_url}/api/studies/1.2.3.999"
    answer = session_for("admin").delete(url, headers={"Origin": "http://evil.example"}, timeout=30)
    assert answer.status_code == 403, answer.text
    answer = session_for("admin").delete(url, headers={"Sec-Fetch-Site": "cross-site"}, timeout=30)
    assert answer.status_code == 403, answer.text
    allowed = session_for("admin").delete(url, headers={"Origin": "http://evil.example", "X-Requested-With": "x"},
                                          timeout=30)
    assert allowed.status_code == 404


def test_cookies_never_authorise_a_change(base_url):
    page = requests.post(f"{base_url}/login", data={"username": "admin", "password": USERS["admin"]},
                         allow_redirects=False, timeout=30)
    cookies = dict(page.cookies)
    assert requests.get(f"{base_url}/api/studies", cookies=cookies, timeout=30).status_code == 200
    url = f"{base_url}/api/studies/1.2.3.999"
    assert requests.delete(url, cookies=cookies, timeout=30).status_code == 403  # no body type, no header
    assert requests.delete(url, cookies=cookies, headers={"X-Requested-With": "x"}, timeout=30).status_code == 401
    assert requests.post(f"{url}/send", cookies=cookies, json={"modality": "x"}, timeout=30).status_code == 401


def test_no_page_may_be_framed(base_url):
    for path in ("/api/health", "/login", "/dicom-web/studies", "/api/nowhere"):
        answer = requests.get(base_url + path, timeout=30)
        assert answer.headers.get("Content-Security-Policy") == "frame-ancestors 'none'", path
        assert answer.headers.get("X-Frame-Options") == "DENY", path


def test_logout_is_at_logout(base_url):
    answer = requests.get(f"{base_url}/logout", allow_redirects=False, timeout=30)
    assert answer.status_code == 200 and "/login" in answer.text

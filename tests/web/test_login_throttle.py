"""Guessing passwords over HTTP: after 10 failures for one name the API and the
dashboard's login page answer 429 with Retry-After, without checking the
password, while other users still log in. (That the checks never run on the
event loop is tested in tests/access/test_throttle.py.)"""

from __future__ import annotations


import requests

from pacsdash.access.throttle import NAME_LIMIT
from tests.web.conftest import USERS, session_for


def test_a_guessed_name_waits_and_the_others_do_not(web_server, base_url):
    for _ in range(NAME_LIMIT):
        wrong = requests.get(f"{base_url}/dicom-web/studies", auth=("editor", "wrong-password"), timeout=30)
        assert wrong.status_code == 401
    refused = requests.get(f"{base_url}/dicom-web/studies", auth=("editor", USERS["editor"]), timeout=30)
    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
    assert "too many failed logins" in refused.json()["error"]
    assert session_for("viewer").get(f"{base_url}/dicom-web/studies", timeout=30).status_code in (200, 204)

    page = requests.post(f"{base_url}/login", data={"username": "editor", "password": USERS["editor"]},
                         allow_redirects=False, timeout=30)
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0
    assert "too many failed logins" in page.text and "<form" in page.text  # the page, saying why

    viewer = requests.post(f"{base_url}/login", data={"username": "viewer", "password": USERS["viewer"]},
                           allow_redirects=False, timeout=30)
    assert viewer.status_code == 302 and "user" in viewer.cookies

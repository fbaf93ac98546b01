"""The ``pacsdash`` command line: argument parsing only; each command calls in."""

from __future__ import annotations

import argparse
import getpass
import shlex
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from pacsdash import __version__
from pacsdash.access.accounts import MIN_PASSWORD_LENGTH
from pacsdash.config import ConfigError, Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LABELS_HELP = ("comma-separated study labels: only studies with one of them are seen (default: every study); "
               "a label is 1 to 64 letters, digits, '_', '.' or '-'")
#: What ``users list`` and ``modalities list`` show for no labels.
EVERY_STUDY = "all studies"


def _add_home(parser: argparse.ArgumentParser, leaf: bool = False) -> None:
    """--home and --config, on a command and (``leaf``) on its actions too."""
    default = argparse.SUPPRESS if leaf else None
    parser.add_argument("--home", type=Path, default=default, help="home folder (default ./pacsdash-home)")
    parser.add_argument("--config", type=Path, default=default, help="config file (default HOME/pacsdash.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacsdash", description="A small PACS: DICOM node, DICOMweb, archive and dashboard.")
    parser.add_argument("--version", action="version", version=f"pacsdash {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _add_home(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8042)")
    serve.add_argument("--dicom-port", type=int, help="DICOM port (default 4242)")
    serve.add_argument("--aet", help="our AE title (default PACSDASH)")
    serve.add_argument("--dicom-tls-port", type=int,
                       help="also accept DICOM over TLS on this port (needs [server] tls_cert and tls_key)")

    demo = sub.add_parser("demo", help="make a home with sample studies, then serve it")
    demo.add_argument("--home", type=Path, default=None, help="home folder (default ./pacsdash-demo)")
    demo.add_argument("--config", type=Path, default=None, help="config file (default HOME/pacsdash.toml)")
    demo.add_argument("--host")
    demo.add_argument("--http-port", type=int)
    demo.add_argument("--dicom-port", type=int)
    demo.add_argument("--aet")
    demo.add_argument("--no-serve", action="store_true", help="only make the home")

    send = sub.add_parser("send", help="send files and folders to a peer with C-STORE")
    send.add_argument("host")
    send.add_argument("port", type=int)
    send.add_argument("paths", nargs="+", type=Path)
    send.add_argument("--aet", default="ANY-SCP", help="called AE title (default ANY-SCP)")
    send.add_argument("--calling-aet", default="PACSDASH", help="our AE title (default PACSDASH)")

    echo = sub.add_parser("echo", help="C-ECHO a peer")
    echo.add_argument("host")
    echo.add_argument("port", type=int)
    echo.add_argument("--aet", default="ANY-SCP", help="called AE title")
    echo.add_argument("--calling-aet", default="PACSDASH")

    imp = sub.add_parser("import", help="import files and folders from disk into the home")
    _add_home(imp)
    imp.add_argument("paths", nargs="+", type=Path)

    export = sub.add_parser("export", help="write studies, or a cohort matching conditions, out of the archive")
    _add_home(export)
    export.add_argument("studies", nargs="*", metavar="STUDY_UID", help="studies to export")
    export.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="a condition as in QIDO (any attribute, by keyword or tag; wildcards, ranges); repeatable")
    export.add_argument("--out", type=Path, required=True, help="a path that does not exist yet (a file for zip)")
    export.add_argument("--format", choices=["zip", "folder", "dicomdir", "nifti"], default=None,
                        help="default: zip when OUT ends in .zip, else folder")
    export.add_argument("--anonymize", action="store_true", help="de-identify (PS3.15 Annex E) what is exported")
    export.add_argument("--option", action="append", default=None, metavar="NAME",
                        help="a de-identification option (default: retain-longitudinal-temporal-information-with-"
                             "modified-dates); repeatable")
    export.add_argument("--include-burned-in", action="store_true",
                        help="also export instances that may show identifying text in their pixels")

    anonymize = sub.add_parser("anonymize", help="store a de-identified copy of a study (PS3.15 Annex E)")
    _add_home(anonymize)
    anonymize.add_argument("study", metavar="STUDY_UID")
    anonymize.add_argument("--profile", choices=["basic"], default="basic",
                           help="the Basic Application Level Confidentiality Profile")
    anonymize.add_argument("--option", action="append", default=None, metavar="NAME",
                           help="an option of the profile, as named in Table E.1-1 (e.g. retain-patient-"
                                "characteristics); default: retain-longitudinal-temporal-information-with-modified-"
                                "dates; repeatable")
    anonymize.add_argument("--include-burned-in", action="store_true",
                           help="also anonymize instances that may show identifying text in their pixels")

    check = sub.add_parser("check", help="verify that the index and the file store agree (exit 1 naming each problem)")
    _add_home(check)
    check.add_argument("--repair", action="store_true",
                       help="repair what is safe: index orphan files, drop rows of lost files, move damaged files "
                            "to HOME/quarantine (nothing is deleted)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    audit = sub.add_parser("audit", help="the audit trail: who did what to which studies (admin)")
    _add_home(audit)
    audit.add_argument("--user", default="", help="only this user (or AE title)")
    audit.add_argument("--action", default="", help="only this action (login, export, anonymize, delete, ...)")
    audit.add_argument("--study", default="", help="only entries naming this StudyInstanceUID")
    audit.add_argument("--since", default="", help="from this ISO-8601 date or time on (UTC unless a zone is given)")
    audit.add_argument("--until", default="", help="before this ISO-8601 date or time")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many entries, newest first")
    audit.add_argument("--csv", action="store_true", help="print CSV instead of a table")

    migrate = sub.add_parser("migrate", help="move the archive to another index and store (verified, resumable)")
    _add_home(migrate)
    migrate.add_argument("--index", required=True, metavar="URL",
                         help="duckdb:PATH (the embedded default) or postgresql://user@host:port/database")
    migrate.add_argument("--storage", required=True, metavar="URL",
                         help="file:PATH (a folder) or s3://bucket/prefix (an S3-compatible object store)")
    migrate.add_argument("--endpoint-url", default="", help="the S3 API's address when it is not AWS's")
    migrate.add_argument("--region", default="", help="the bucket's region")

    tls = sub.add_parser("tls", help="TLS certificates")
    tls_sub = tls.add_subparsers(dest="tls_command", required=True)
    selfsigned = tls_sub.add_parser("selfsigned", help="write HOME/tls/cert.pem and key.pem (self-signed, 0600)")
    selfsigned.add_argument("--force", action="store_true", help="replace an existing certificate")
    _add_home(tls)
    _add_home(selfsigned, leaf=True)
    pseudonym = sub.add_parser("pseudonym", help="look up whom a subject pseudonym stands for (admin)")
    _add_home(pseudonym)
    pseudonym.add_argument("pseudonym")

    users = sub.add_parser("users", help="manage users")
    _add_home(users)
    users_sub = users.add_subparsers(dest="action", required=True)
    add = users_sub.add_parser("add")
    _add_home(add, leaf=True)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["admin", "editor", "viewer"])
    add.add_argument("--password-stdin", action="store_true",
                     help=f"read the password (at least {MIN_PASSWORD_LENGTH} characters) from standard input")
    add.add_argument("--labels", default="", metavar="L1,L2", help=LABELS_HELP)
    _add_home(users_sub.add_parser("list"), leaf=True)
    remove = users_sub.add_parser("remove")
    _add_home(remove, leaf=True)
    remove.add_argument("name")
    passwd = users_sub.add_parser("passwd")
    _add_home(passwd, leaf=True)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true",
                        help=f"read the new password (at least {MIN_PASSWORD_LENGTH} characters) from standard input")
    ulabels = users_sub.add_parser("labels", help="restrict a user to studies with these labels ('' lifts it)")
    _add_home(ulabels, leaf=True)
    ulabels.add_argument("name")
    ulabels.add_argument("labels", metavar="L1,L2", help=LABELS_HELP)

    mods = sub.add_parser("modalities", help="manage DICOM peers")
    _add_home(mods)
    mods_sub = mods.add_subparsers(dest="action", required=True)
    madd = mods_sub.add_parser("add")
    _add_home(madd, leaf=True)
    madd.add_argument("name")
    madd.add_argument("--aet", required=True)
    madd.add_argument("--host", required=True)
    madd.add_argument("--port", type=int, required=True)
    madd.add_argument("--allow", default="store,find,move,get", help="comma-separated: store,find,move,get")
    madd.add_argument("--labels", default="", metavar="L1,L2", help=LABELS_HELP)
    _add_home(mods_sub.add_parser("list"), leaf=True)
    mremove = mods_sub.add_parser("remove")
    _add_home(mremove, leaf=True)
    mremove.add_argument("name")
    mlabels = mods_sub.add_parser("labels", help="restrict a peer to studies with these labels ('' lifts it)")
    _add_home(mlabels, leaf=True)
    mlabels.add_argument("name")
    mlabels.add_argument("labels", metavar="L1,L2", help=LABELS_HELP)

    labels = sub.add_parser("labels", help="study labels, which users and peers may be restricted to")
    _add_home(labels)
    labels_sub = labels.add_subparsers(dest="action", required=True)
    for action, text in (("add", "give a study a label"), ("remove", "take a label from a study")):
        change = labels_sub.add_parser(action, help=text)
        _add_home(change, leaf=True)
        change.add_argument("study", metavar="STUDY_UID")
        change.add_argument("label", metavar="LABEL")
    llist = labels_sub.add_parser("list", help="the labels of a study")
    _add_home(llist, leaf=True)
    llist.add_argument("study", metavar="STUDY_UID")
    return parser


def _has_index(settings: Settings) -> bool:
    """Whether the home names an index that may hold an archive (a PostgreSQL one always may)."""
    return bool(settings.index.url) or settings.index_path.exists()


def _settings(args: argparse.Namespace, **overrides) -> Settings:
    return load_settings(args.home, args.config, **overrides)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise SystemExit("give --password-stdin to read the password from standard input")
    from pacsdash.access import AccountError, check_password, confirmed_password

    try:
        first = check_password(getpass.getpass(f"Password (at least {MIN_PASSWORD_LENGTH} characters): "))
        return confirmed_password(first, getpass.getpass("Again: "))
    except AccountError as exc:
        raise SystemExit(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from pacsdash.server import configure_logging, serve

    settings = _settings(args, host=args.host, http_port=args.http_port, dicom_port=args.dicom_port, aet=args.aet,
                         dicom_tls_port=args.dicom_tls_port)
    configure_logging(settings)
    serve(settings)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pacsdash.config import DEMO_HOME
    from pacsdash.demo import make_demo_home

    settings = load_settings(args.home if args.home is not None else DEMO_HOME, args.config, host=args.host,
                             http_port=args.http_port, dicom_port=args.dicom_port, aet=args.aet)
    settings = make_demo_home(settings)
    home = shlex.quote(str(settings.home))
    print(f"""
The demo home is {settings.home}. Every command takes --home; for this one:
  add a user:      pacsdash users add NAME --role admin|editor|viewer --password-stdin --home {home}
  register a peer: pacsdash modalities add NAME --aet AET --host HOST --port N --home {home}
  import files:    pacsdash import PATH... --home {home}
""", flush=True)
    if args.no_serve:
        return EXIT_OK
    from pacsdash.server import configure_logging, serve

    configure_logging(settings)
    serve(settings)
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    from pacsdash.dimse.scu import AssociationFailed, iter_files, send_files

    files = list(iter_files(args.paths))
    missing = [p for p in files if not p.exists()]
    for path in missing:
        print(f"FAILED {path}: no such file", file=sys.stderr)
    files = [p for p in files if p.exists()]
    failed = list(missing)
    with tqdm(total=len(files), unit="file", desc="C-STORE", disable=None) as bar:

        def on_result(result) -> None:
            bar.update(1)
            if not result.ok:
                failed.append(result.path)
                status = "no status" if result.status is None else f"status 0x{result.status:04X}"
                tqdm.write(f"FAILED {result.path}: {status} {result.error}".rstrip(), file=sys.stderr)

        try:
            send_files(args.host, args.port, files, args.aet, args.calling_aet, on_result=on_result)
        except AssociationFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"sent {len(files) - len(failed) + len(missing)} of {len(files) + len(missing)} files")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_echo(args: argparse.Namespace) -> int:
    from pacsdash.dimse.scu import AssociationFailed, echo

    try:
        status = echo(args.host, args.port, args.aet, args.calling_aet)
    except AssociationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"C-ECHO {args.aet}@{args.host}:{args.port}: status 0x{status:04X}")
    return EXIT_OK if status == 0 else EXIT_FAILED


def cmd_import(args: argparse.Namespace) -> int:
    from pacsdash.dimse.scu import iter_files
    from pacsdash.runtime import running_server

    settings = _settings(args)
    files = [p.resolve() for p in iter_files(args.paths)]
    server = running_server(settings.run_path)
    failed = 0
    stored = duplicates = 0
    with tqdm(total=len(files), unit="file", desc="import", disable=None) as bar:
        for path, outcome, error in (_import_via_server(server, files) if server else _import_offline(settings, files)):
            bar.update(1)
            if error:
                failed += 1
                tqdm.write(f"FAILED {path}: {error}", file=sys.stderr)
            elif outcome == "duplicate":
                duplicates += 1
            else:
                stored += 1
    print(f"imported {stored} new, {duplicates} already archived, {failed} failed")
    return EXIT_FAILED if failed else EXIT_OK


def _import_offline(settings: Settings, files: list[Path]) -> Iterable[tuple[Path, str, str]]:
    from pacsdash.archive import store_many
    from pacsdash.archive.factory import open_archive
    from pacsdash.config import init_home
    from pacsdash.runtime import HomeLock

    init_home(settings.home)
    with HomeLock(settings.run_path), open_archive(settings) as archive:
        archive.reconcile()
        for path, result in store_many(archive, files):
            if isinstance(result, Exception):
                yield path, "", str(result)
            else:
                yield path, result.outcome.value, ""


def _import_via_server(server, files: list[Path], batch: int = 64) -> Iterable[tuple[Path, str, str]]:
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        request = urllib.request.Request(
            f"{server.base_url}/api/local/import",
            data=json.dumps({"paths": [str(p) for p in chunk]}).encode(),
            headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=600, context=server.ssl_context()) as response:
                results = json.loads(response.read())["results"]
        except (urllib.error.URLError, OSError, ValueError) as exc:
            for path in chunk:
                yield path, "", f"the running server did not take it: {exc}"
            continue
        for item in results:
            yield Path(item["path"]), item.get("outcome", ""), item.get("error", "")


def _local_api(server, method: str, path: str, body: dict | None = None, timeout: float = 3600) -> dict:
    """Call the running server's JSON API as the local command line.

    Raises
    ------
    RuntimeError
        With the server's error message.
    """
    request = urllib.request.Request(
        f"{server.base_url}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=server.ssl_context()) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise RuntimeError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"the running server did not answer: {exc}") from None


def _offline_actions(settings: Settings):
    """The archive's actions on a home no server runs on (the home locked meanwhile)."""
    from contextlib import contextmanager

    from pacsdash.archive.factory import open_archive
    from pacsdash.archive.actions import StudyActions
    from pacsdash.config import init_home
    from pacsdash.runtime import HomeLock

    @contextmanager
    def opened():
        if not (settings.home / "pacsdash.toml").exists() and not _has_index(settings):
            raise SystemExit(f"error: {settings.home} holds no pacsdash archive")
        init_home(settings.home)
        with HomeLock(settings.run_path), open_archive(settings) as archive:
            yield StudyActions(archive, settings.home)

    return opened()


def _actor():
    from pacsdash.archive.actions import Actor

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(name=f"cli:{name}", kind="local")


def cmd_anonymize(args: argparse.Namespace) -> int:
    """Store a de-identified copy of a study; print its StudyInstanceUID last."""
    from pacsdash.archive.actions import ActionError
    from pacsdash.runtime import running_server

    settings = _settings(args)
    server = running_server(settings.run_path)
    try:
        if server is not None:
            result = _local_api(server, "POST", f"/api/studies/{urllib.request.quote(args.study, safe='')}/anonymize",
                                {"options": args.option, "include_burned_in": args.include_burned_in})
        else:
            with _offline_actions(settings) as actions, tqdm(unit="instance", desc="anonymize", disable=None) as bar:
                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                result = actions.anonymize(args.study, _actor(), args.option, args.include_burned_in,
                                           progress).as_json()
    except (ActionError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for excluded in result.get("excluded", []):
        print(f"left out {excluded['SOPInstanceUID']}: {excluded['reason']}", file=sys.stderr)
    print(f"stored {result.get('stored', 0)} de-identified instances "
          f"({result.get('duplicates', 0)} already there, {len(result.get('excluded', []))} left out) "
          f"as patient {result.get('PatientID', '')}", file=sys.stderr)
    print(result["StudyInstanceUID"])
    return EXIT_OK


def _export_request(args: argparse.Namespace):
    from pacsdash.research.export import ExportFormat, ExportRequest
    from pacsdash.research.options import DEFAULT_OPTIONS, Option

    where = {}
    for condition in args.where:
        key, sep, value = condition.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"error: --where takes KEY=VALUE, got {condition[:80]!r}")
        where[key.strip()] = value
    name = args.format or ("zip" if args.out.suffix.lower() == ".zip" else "folder")
    try:
        options = DEFAULT_OPTIONS if args.option is None else frozenset(Option.parse(o) for o in args.option)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    return ExportRequest(out=args.out.resolve(), studies=list(args.studies), where=where, format=ExportFormat(name),
                         anonymize=args.anonymize, options=options if args.anonymize else frozenset(),
                         include_burned_in=args.include_burned_in)


def cmd_export(args: argparse.Namespace) -> int:
    """Studies or a cohort out of the archive, through the running server if any."""
    import time

    from pacsdash.archive.actions import ActionError
    from pacsdash.runtime import running_server

    settings = _settings(args)
    request = _export_request(args)
    server = running_server(settings.run_path)
    with tqdm(unit="instance", desc="export", disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            if server is not None:
                job = _local_api(server, "POST", "/api/exports", {**request_json(request), "out": str(request.out)})
                while job.get("state") in ("queued", "running"):
                    progress(job.get("done", 0), job.get("total", 0))
                    time.sleep(0.5)
                    job = _local_api(server, "GET", f"/api/exports/{job['id']}")
                if job.get("state") != "done":
                    raise RuntimeError(job.get("error") or "the export failed")
                summary = job["summary"]
            else:
                with _offline_actions(settings) as actions:
                    summary = actions.export(request, _actor(), progress).as_json()
        except (ActionError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"wrote {summary['out']}: {summary['files']} files from {len(summary['studies'])} studies"
          + (f", {summary['left_out']} left out (see manifest.csv)" if summary["left_out"] else ""))
    return EXIT_OK


def request_json(request) -> dict:
    """An export request as the JSON API takes it."""
    return {"studies": request.studies, "where": request.where, "format": request.format.value,
            "anonymize": request.anonymize, "options": [o.value for o in request.options],
            "include_burned_in": request.include_burned_in}


def cmd_check(args: argparse.Namespace) -> int:
    """Check the home's index against its store, through the running server if any."""
    from pacsdash.archive.check import CheckReport
    from pacsdash.runtime import running_server

    settings = _settings(args)
    server = running_server(settings.run_path)
    try:
        if server is not None:
            report = CheckReport.from_json(_local_api(server, "POST", "/api/check", {"repair": args.repair},
                                                      timeout=24 * 3600))
        else:
            report = _check_offline(settings, args.repair)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.as_json(), indent=1))
    else:
        for problem in report.problems:
            print(problem.line())
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _check_offline(settings: Settings, repair: bool):
    """The check on a home no server runs on, under the home's lock."""
    from pacsdash.archive.factory import open_archive
    from pacsdash.archive.check import check_archive, quarantine_folder
    from pacsdash.runtime import HomeLock

    if not _has_index(settings):
        raise RuntimeError(f"{settings.home} holds no pacsdash archive (no index); give the right one with --home")
    with HomeLock(settings.run_path), open_archive(settings) as archive, \
            tqdm(unit="file", desc="check", disable=None) as bar:
        if not archive.was_clean:
            if repair:
                archive.store.clean_temporary()
            else:
                archive.dirty = True  # the next start still reconciles what the unclean stop left
            print(f"note: the last stop of {settings.home} was unclean", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        return check_archive(archive, repair=repair, quarantine=quarantine_folder(settings.home),
                             actor=_actor().origin, progress=progress)


def cmd_audit(args: argparse.Namespace) -> int:
    """The audit trail, through the running server if any (see :mod:`pacsdash.archive.audit`)."""
    import urllib.parse

    from pacsdash.archive import audit
    from pacsdash.runtime import running_server

    settings = _settings(args)
    wanted = {"user": args.user, "action": args.action, "study": args.study, "since": args.since,
              "until": args.until, "limit": args.limit}
    try:
        checked = audit.filters(**wanted)
    except audit.BadFilter as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    server = running_server(settings.run_path)
    try:
        if server is not None:
            query = urllib.parse.urlencode({k: v for k, v in wanted.items() if v})
            entries = _local_api(server, "GET", f"/api/audit?{query}")["entries"]
        else:
            entries = _audit_offline(settings, checked)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.csv:
        sys.stdout.write(audit.as_csv(entries))
        return EXIT_OK
    for item in entries:
        studies = ", ".join(item["studies"][:3]) + (" ..." if len(item["studies"]) > 3 else "")
        print(f"{item['time']}  {item['user']:<16} {item['address']:<15} {item['action']:<12} "
              f"{item['outcome']:<8} {studies}")
    print(f"{len(entries)} entries")
    return EXIT_OK


def _audit_offline(settings: Settings, checked: dict) -> list[dict]:
    """The audit entries of a home no server runs on, under the home's lock."""
    from pacsdash.archive import audit
    from pacsdash.archive.factory import open_archive
    from pacsdash.runtime import HomeLock

    if not _has_index(settings):
        raise RuntimeError(f"{settings.home} holds no pacsdash archive (no index); give the right one with --home")
    with HomeLock(settings.run_path), open_archive(settings) as archive:
        return [audit.entry(r) for r in archive.records(**checked)]


def _copy_accounts(settings: Settings, target: Settings) -> tuple[list[str], list[str]]:
    """Users and CLI-registered peers follow the index when their place changes (SQLite file <-> PostgreSQL)."""
    from pacsdash.access import copy_accounts, open_accounts

    if settings.index.url == target.index.url:
        return [], []
    return copy_accounts(open_accounts(settings), open_accounts(target))


def cmd_migrate(args: argparse.Namespace) -> int:
    """``migrate --index URL --storage URL``: copy, verify, then point the config at the destination."""
    from pacsdash.archive.factory import open_archive
    from pacsdash.archive.migrate import MigrationError, check_target, migrate, rewrite_config, target_settings
    from pacsdash.runtime import HomeLock

    settings = _settings(args)
    if not _has_index(settings):
        print(f"error: {settings.home} holds no pacsdash archive; give the right one with --home", file=sys.stderr)
        return EXIT_FAILED
    target = target_settings(settings, args.index, args.storage, args.endpoint_url, args.region)
    check_target(settings, target)
    with HomeLock(settings.run_path), open_archive(settings) as source:
        source.reconcile()
        total = source.index.totals()["instances"]
        with open_archive(target) as destination, tqdm(total=total, unit="instance", desc="migrate",
                                                       disable=None) as bar:
            try:
                report = migrate(source, destination, progress=bar.update)
            except MigrationError as exc:
                print(f"error: {exc}\nnothing was changed in {settings.home}: its config still names the source; "
                      "run migrate again to go on", file=sys.stderr)
                return EXIT_FAILED
        users, _ = _copy_accounts(settings, target)
        rewrite_config(settings.home, target)
    print(f"copied {report.copied} and verified {report.verified} instances (SHA-256), {report.labels} labels, "
          f"{report.records} audit entries, {report.subjects} pseudonyms, {len(users)} users and peers")
    print(f"{settings.home / 'pacsdash.toml'} now names index {target.index.url or target.index.path} and storage "
          f"{target.storage.url or target.storage.path}; the source is left as it was")
    return EXIT_OK


def cmd_tls(args: argparse.Namespace) -> int:
    """``tls selfsigned``: a certificate for this home; prints both paths."""
    from pacsdash.config import init_home
    from pacsdash.tls import CertificateExists, subject_names, write_selfsigned

    settings = load_settings(args.home, getattr(args, "config", None))
    init_home(settings.home)
    try:
        cert, key = write_selfsigned(settings.home / "tls", settings.server.host, force=args.force)
    except CertificateExists as exc:
        print(f"pacsdash: {exc}", file=sys.stderr)
        return 1
    print(f"self-signed certificate for {', '.join(subject_names(settings.server.host))}")
    print(f"to serve HTTPS, set in {settings.home / 'pacsdash.toml'} [server]: tls_cert = \"tls/cert.pem\" "
          f"and tls_key = \"tls/key.pem\"")
    print(cert)
    print(key)
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    """Print whom a pseudonym stands for (the home's owner only)."""
    from pacsdash.runtime import running_server

    settings = _settings(args)
    server = running_server(settings.run_path)
    try:
        if server is not None:
            found = _local_api(server, "GET", f"/api/pseudonyms/{urllib.request.quote(args.pseudonym, safe='')}")
        else:
            with _offline_actions(settings) as actions:
                found = actions.lookup(args.pseudonym)
                if found is None:
                    raise RuntimeError(f"no subject {args.pseudonym[:80]!r} in this home")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{found['pseudonym']}\tPatientID={found['PatientID']}\tIssuerOfPatientID={found['IssuerOfPatientID']}"
          f"\tfirst seen {found['first_seen']}")
    return EXIT_OK


def _note_new_home(settings: Settings) -> None:
    """Say so when a command is about to make a home where there was none
    (a newcomer may be pointing at the wrong folder)."""
    if not (settings.home / "pacsdash.toml").exists() and not settings.accounts_path.exists() \
            and not _has_index(settings):
        print(f"note: {settings.home} holds no pacsdash home yet: a new one is made there. If a server already "
              f"runs elsewhere (the demo uses ./pacsdash-demo), give its folder with --home.", file=sys.stderr)


def _record_change(settings: Settings, record) -> bool:
    """Put the ``user_change`` entry ``record`` in the home's audit trail:
    through the running server (only its process writes the index), else
    into the archive under the home's lock. False, having said why, if it could not."""
    from pacsdash.access import changes
    from pacsdash.runtime import HomeBusy, running_server

    server = running_server(settings.run_path)
    try:
        if server is not None:
            _local_api(server, "POST", "/api/local/audit", changes.as_json(record), timeout=60)
        else:
            from pacsdash.archive.factory import open_archive
            from pacsdash.config import init_home
            from pacsdash.runtime import HomeLock

            init_home(settings.home)
            with HomeLock(settings.run_path), open_archive(settings) as archive:
                archive.record(record)
    except (RuntimeError, HomeBusy, OSError) as exc:
        print(f"error: the change was made, but could not be put in the audit trail: {exc}", file=sys.stderr)
        return False
    return True


def _account_change(settings: Settings, user: str, change: str, do, **details) -> int:
    """Run ``do()`` (which changes the accounts and prints what it did) and record it,
    or its refusal, as a ``user_change`` in the audit trail (never a password)."""
    from pacsdash.access import AccountError, changes

    try:
        do()
    except (AccountError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        try:
            record = changes.user_change(_actor().name, user, change, False, error=str(exc)[:1000], **details)
        except changes.BadChange:  # a name too long to record: nothing was changed either
            return EXIT_FAILED
        _record_change(settings, record)
        return EXIT_FAILED
    recorded = _record_change(settings, changes.user_change(_actor().name, user, change, True, **details))
    return EXIT_OK if recorded else EXIT_FAILED


def _listed(labels: str) -> list[str] | str:
    """``--labels`` as the audit trail lists them: checked, or as typed when they are not valid."""
    from pacsdash.access import AccountError, checked_labels

    try:
        return list(checked_labels(labels))
    except AccountError:
        return labels[:1000]


def _sees(labels: tuple[str, ...]) -> str:
    return f"only studies labelled {', '.join(labels)}" if labels else "every study"


def cmd_users(args: argparse.Namespace) -> int:
    from pacsdash.access import has_accounts, open_accounts

    settings = _settings(args)
    if args.action in ("add", "passwd"):
        _note_new_home(settings)
    elif not has_accounts(settings):
        print(f"error: {settings.home} holds no pacsdash home (no accounts); give the right one with --home",
              file=sys.stderr)
        return EXIT_FAILED
    accounts = open_accounts(settings)
    if args.action == "list":
        for user in accounts.users():
            print(f"{user.name}\t{user.role.value}\t{','.join(user.labels) or EVERY_STUDY}")
        return EXIT_OK
    if args.action == "add":
        def add() -> None:
            user = accounts.add_user(args.name, args.role, _read_password(args.password_stdin), args.labels)
            print(f"added {user.name} ({user.role.value}, {_sees(user.labels)})")

        return _account_change(settings, args.name, "add", add, role=args.role, labels=_listed(args.labels))
    if args.action == "remove":
        def remove() -> None:
            accounts.remove_user(args.name)
            print(f"removed {args.name}")

        return _account_change(settings, args.name, "remove", remove)
    if args.action == "passwd":
        def passwd() -> None:
            accounts.set_password(args.name, _read_password(args.password_stdin))
            print(f"changed the password of {args.name}")

        return _account_change(settings, args.name, "password", passwd)

    def relabel() -> None:
        changed = accounts.set_labels(args.name, args.labels)
        user = accounts.user(args.name)
        now = _sees(user.labels if user else ())
        print(f"{args.name} now sees {now}" if changed else f"{args.name} already saw {now}: nothing changed")

    return _account_change(settings, args.name, "labels", relabel, labels=_listed(args.labels))


def cmd_modalities(args: argparse.Namespace) -> int:
    from pacsdash.access import has_accounts, open_accounts

    settings = _settings(args)
    if args.action == "add":
        _note_new_home(settings)
    elif not has_accounts(settings) and not (settings.home / "pacsdash.toml").exists():
        print(f"error: {settings.home} holds no pacsdash home; give the right one with --home", file=sys.stderr)
        return EXIT_FAILED
    accounts = open_accounts(settings)
    if args.action == "list":
        for peer in accounts.modalities():
            print(f"{peer.name}\t{peer.aet}\t{peer.host}\t{peer.port}\t{','.join(peer.allow)}"
                  f"\t{','.join(peer.labels) or EVERY_STUDY}")
        return EXIT_OK
    if args.action == "add":
        def add() -> None:
            peer = accounts.add_modality(args.name, args.aet, args.host, args.port, args.allow, args.labels)
            print(f"added {peer.name}: {peer.aet}@{peer.host}:{peer.port} may {','.join(peer.allow)}, "
                  f"{_sees(peer.labels)}")

        return _account_change(settings, args.name, "peer_add", add, aet=args.aet, host=args.host, port=args.port,
                               allow=[a.strip() for a in args.allow.split(",") if a.strip()],
                               labels=_listed(args.labels))
    if args.action == "remove":
        def remove() -> None:
            accounts.remove_modality(args.name)
            print(f"removed {args.name}")

        return _account_change(settings, args.name, "peer_remove", remove)

    def relabel() -> None:
        changed = accounts.set_modality_labels(args.name, args.labels)
        peer = accounts.modality(args.name)
        now = _sees(peer.labels if peer else ())
        print(f"{args.name} now sees {now}" if changed else f"{args.name} already saw {now}: nothing changed")

    return _account_change(settings, args.name, "peer_edit", relabel, labels=_listed(args.labels))


def cmd_labels(args: argparse.Namespace) -> int:
    """``labels add|remove|list STUDY_UID [LABEL]``, through the running server if any."""
    from pacsdash.archive.actions import ActionError
    from pacsdash.config import check_label
    from pacsdash.runtime import running_server

    label = getattr(args, "label", None)
    if label is not None:
        try:
            check_label(label, "LABEL")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    settings = _settings(args)
    server = running_server(settings.run_path)
    try:
        if server is not None:
            path = f"/api/studies/{urllib.request.quote(args.study, safe='')}/labels"
            if label is None:
                now = _local_api(server, "GET", path)["labels"]
            else:
                answer = _local_api(server, "PUT" if args.action == "add" else "DELETE",
                                    f"{path}/{urllib.request.quote(label, safe='')}")
                now = answer.get("labels")
                if now is None:
                    now = _local_api(server, "GET", path)["labels"]
                changed = answer.get("changed", (label in now) == (args.action == "add"))
        else:
            with _offline_actions(settings) as actions:
                if label is not None:
                    change = actions.add_label if args.action == "add" else actions.remove_label
                    changed = change(args.study, label, _actor())
                now = actions.labels(args.study, _actor())
    except (ActionError, RuntimeError) as exc:
        print(f"error: study {args.study[:80]}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if label is None:
        for name in now:
            print(name)
        return EXIT_OK
    if args.action == "add":
        print(f"added label {label} to study {args.study}" if changed
              else f"study {args.study} already had label {label}: nothing changed")
    else:
        print(f"removed label {label} from study {args.study}" if changed
              else f"study {args.study} had no label {label}: nothing changed")
    return EXIT_OK


COMMANDS = {
    "serve": cmd_serve,
    "demo": cmd_demo,
    "send": cmd_send,
    "echo": cmd_echo,
    "import": cmd_import,
    "export": cmd_export,
    "anonymize": cmd_anonymize,
    "pseudonym": cmd_pseudonym,
    "check": cmd_check,
    "tls": cmd_tls,
    "migrate": cmd_migrate,
    "audit": cmd_audit,
    "users": cmd_users,
    "modalities": cmd_modalities,
    "labels": cmd_labels,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pacsdash`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear line, not a traceback, for expected failures
        from pacsdash.runtime import HomeBusy
        from pacsdash.server import PortTaken

        if isinstance(exc, HomeBusy | PortTaken):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())

"""The results: metric rows, the Markdown table, and the JSON and Markdown files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = [("pacsdash", "pacsdash"), ("orthanc", "Orthanc"), ("bare", "bare pynetdicom"),
           ("pacsdash-pg", "pacsdash PG+S3"), ("orthanc-pg", "Orthanc PG")]
#: Columns shown only when the run measured (or tried) something on them.
OPTIONAL_COLUMNS = ("pacsdash-pg", "orthanc-pg")
ALL_SERVERS = tuple(name for name, _ in COLUMNS)
NOT_APPLICABLE = "n/a"


@dataclass
class Metric:
    """One row: a value per server, or why there is none."""

    id: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    applies: tuple[str, ...] = ALL_SERVERS
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: Optional text shown after a value (e.g. "flat").
    notes: dict[str, str] = field(default_factory=dict)
    #: Servers whose value was measured while other processes loaded the machine.
    flagged: set[str] = field(default_factory=set)

    def ratio(self, a: str = "pacsdash", b: str = "orthanc") -> float | None:
        """``a`` / ``b`` (pacsdash / Orthanc by default), when both were measured."""
        x, y = self.values.get(a), self.values.get(b)
        if x is None or y is None or y == 0:
            return None
        return x / y

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio()
        pg_ratio = self.ratio("pacsdash-pg", "orthanc-pg")
        return {
            "id": self.id,
            "metric": self.label,
            "unit": self.unit,
            "better": self.better,
            "values": self.values,
            "notes": self.notes,
            "skipped": self.skipped,
            "measured_under_foreign_load": sorted(self.flagged),
            "not_applicable": [s for s, _ in COLUMNS if s not in self.applies],
            "ratio_pacsdash_over_orthanc": None if ratio is None else round(ratio, 3),
            "ratio_pacsdash_pg_over_orthanc_pg": None if pg_ratio is None else round(pg_ratio, 3),
        }


@dataclass
class Results:
    """Everything one run measured, plus where and how."""

    meta: dict[str, Any]
    metrics: dict[str, Metric] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    log_issues: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def metric(self, id: str, label: str, unit: str, better: str, applies: tuple[str, ...] | None = None) -> Metric:
        """The row ``id``, created on first use (rows keep their creation order)."""
        if id not in self.metrics:
            self.metrics[id] = Metric(id, label, unit, better, applies or ALL_SERVERS)
        return self.metrics[id]

    def skip(self, ids: list[str], server: str, reason: str) -> None:
        """Mark rows ``ids`` as not measured on ``server``."""
        for id in ids:
            if id in self.metrics and server in self.metrics[id].applies:
                self.metrics[id].skipped[server] = reason

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.meta,
            "metrics": [m.as_dict() for m in self.metrics.values()],
            "details": self.details,
            "server_log_issues": self.log_issues,
            "notes": self.notes,
        }


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(metric: Metric, server: str) -> str:
    if server not in metric.applies:
        return NOT_APPLICABLE
    if server in metric.values:
        note = metric.notes.get(server)
        mark = " †" if server in metric.flagged else ""
        return _number(metric.values[server]) + (f" ({note})" if note else "") + mark
    reason = metric.skipped.get(server, "not run")
    short = reason if len(reason) <= 48 else reason[:45] + "..."
    return "skipped: " + short.replace("|", "/").replace("\n", " ")


def columns(results: Results) -> list[tuple[str, str]]:
    """The servers shown: the three classic columns always, the PostgreSQL ones when the run tried them."""
    tried = {s for m in results.metrics.values() for s in (*m.values, *m.skipped)}
    return [(s, label) for s, label in COLUMNS if s not in OPTIONAL_COLUMNS or s in tried]


def _ratio_text(ratio: float | None, better: str) -> str:
    return "" if ratio is None else f"{ratio:.2f}x ({better} is better)"


def table(results: Results) -> str:
    """The Markdown table: one row per metric, one column per server, and the ratios."""
    shown = columns(results)
    pg = "orthanc-pg" in dict(shown)
    header = ["Metric", *[label for _, label in shown], "pacsdash / Orthanc"] + \
        (["pacsdash PG+S3 / Orthanc PG"] if pg else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for metric in results.metrics.values():
        ratios = [_ratio_text(metric.ratio(), metric.better)]
        if pg:
            ratios.append(_ratio_text(metric.ratio("pacsdash-pg", "orthanc-pg"), metric.better))
        label = f"{metric.label} [{metric.unit}]"
        lines.append("| " + " | ".join([label, *[_cell(metric, s) for s, _ in shown], *ratios]) + " |")
    return "\n".join(lines)


def markdown(results: Results) -> str:
    """The whole report: context, table, skipped reasons, notes, details."""
    meta = results.meta
    machine = meta["machine"]
    counts = meta["config"]
    out = [
        f"# pacsdash benchmarks ({'quick' if counts.get('quick') else 'full'} run)",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: `{machine['uname']}`",
        f"- CPUs: {machine['cpu_count']} ({machine.get('cpu_model', '?')}), memory {machine.get('mem_total_gib', '?')} GiB,"
        f" work folder on {machine.get('work_fs', '?')}",
        f"- Software: pacsdash {machine.get('pacsdash')} ({machine.get('git_commit', '?')}), Python {machine['python']},"
        f" pynetdicom {machine.get('pynetdicom')}, pydicom {machine.get('pydicom')}, {machine.get('dcmtk', 'dcmtk ?')},"
        f" {machine.get('orthanc', 'Orthanc ?')}",
        "- pacsdash code per phase: " + (", ".join(f"{k}: {v}" for k, v in results.details.get("pacsdash_source", {}).items())
                                         or meta.get("pacsdash_source_at_start", "?")),
        f"- Instances: ingest {counts['ingest_ct_512']} CT 512x512 per run; C-FIND index {counts['find_index']} "
        f"instances in {counts['find_studies']} studies of {counts['find_patients']} patients, "
        f"{counts['find_repetitions']} repetitions per query; memory run {counts['memory_ct_128']} CT 128x128"
        + (f"; DICOMweb and viewer study {counts['web_ct_512']} CT 512x512; dashboard index "
           f"{counts['dash_studies']:,} generated studies, {counts['browser_repetitions']} browser sessions"
           if "web_ct_512" in counts else "")
        + (f"; research study {counts['research_ct_512']} CT 512x512 ({counts['research_repetitions']} repetitions), "
           f"cohort {counts['research_cohort_ct_128']:,} CT 128x128" if "research_ct_512" in counts else "")
        + (f"; notebook volume {counts['notebook_ct_512']} CT 512x512, cohort indexes "
           + ", ".join(f"{n:,}" for n in counts.get("notebook_cohort_sizes", [])) + " generated instances"
           if "notebook_ct_512" in counts else ""),
        "",
        table(results),
        "",
    ]
    skipped: dict[tuple[str, str], list[str]] = {}
    for m in results.metrics.values():
        for server, reason in m.skipped.items():
            skipped.setdefault((server, reason), []).append(m.label)
    if skipped:
        out += ["## Skipped or failed", ""]
        for (server, reason), labels in skipped.items():
            what = labels[0] if len(labels) == 1 else f"{len(labels)} rows from '{labels[0]}'"
            out.append(f"- {server}, {what}: {' '.join(reason.split())[:400]}")
        out.append("")
    if results.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in results.notes] + [""]
    find = results.details.get("find", {})
    if find:
        out += ["## C-FIND details", "", "| Server | Query | matches | expected | median ms | p95 ms | min ms | max ms |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for server, per_query in find.items():
            if not isinstance(per_query, dict) or "queries" not in per_query:
                continue
            for q in per_query["queries"].values():
                out.append(f"| {server} | {q['label']} | {q['matches']} | {q['expected_matches']} | {q['median_ms']} |"
                           f" {q['p95_ms']} | {q['min_ms']} | {q['max_ms']} |")
        out.append("")
    web = results.details.get("dicomweb", {})
    if web:
        out += ["## DICOMweb details", "", "| Server | Request | median ms | p95 ms | min ms | max ms | body bytes | checked |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for server, rows in web.items():
            for name, r in rows.items():
                if "error" in r:
                    out.append(f"| {server} | {name} | | | | | | wrong: {r['error'][:120]} |")
                    continue
                checked = ", ".join(f"{k} {r[k]}" for k in ("matches", "instances", "frame_bytes", "jpeg_bytes")
                                    if k in r)
                out.append(f"| {server} | {r['label']} | {r['median_ms']} | {r['p95_ms']} | {r['min_ms']} | "
                           f"{r['max_ms']} | {r['body_bytes']:,} | {checked} |")
        out.append("")
    dash = results.details.get("dashboard", {})
    if dash.get("search"):
        out += ["## Dashboard search details (StudySearch.refresh = index page + count + table)", "",
                "| Search | matches | refresh median ms | p95 ms | index page query ms | index count ms |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in dash["search"].values():
            out.append(f"| {r['label']} | {r['matches']:,} | {r['median_ms']} | {r['p95_ms']} | "
                       f"{r['index_find_page_median_ms']} | {r['index_count_median_ms']} |")
        out.append("")
    if dash.get("browser_sessions"):
        out += ["## Browser sessions (ms from the click; scroll of the loaded series; the study link from the start "
                "of its navigation)", "",
                "| # | login to table | search | study panel | viewer | first frame | all slices held | "
                "every slice: fps | max gap ms | fast keys/s | slices drawn | skipped | fps | "
                "link: first byte | link: viewer | link: first frame |",
                "|---:|" + "---:|" * 15]
        for k, b in enumerate(dash["browser_sessions"], 1):
            marks, sc, pc = b.get("first_frame_marks_ms", {}), b["scroll"], b.get("scroll_paced", {})
            link = b.get("link_marks_ms", {})
            out.append(f"| {k} | {b['login_to_table_ms']} | {b['browser_search_ms']} | {marks.get('study_panel', '')} |"
                       f" {marks.get('viewer', '')} | {b['first_frame_ms']} | {b['all_slices_cached_after_first_ms']} |"
                       f" {pc.get('fps', '')} | {pc.get('max_gap_ms', '')} |"
                       f" {b['key_presses_per_s']} | {sc['slices_drawn']} | {sc['slices_skipped']} | {sc['fps']} |"
                       f" {link.get('response_start', '')} | {link.get('viewer', '')} | {link.get('frame', '')} |")
        out.append("")
    research = results.details.get("research", {})
    runs = {server: r["runs"] for server, r in research.items() if isinstance(r, dict) and "runs" in r}
    if runs:
        out += ["## Research details (seconds per repetition)", "",
                "| Server | # | anonymize s | ZIP s (job done) | ZIP bytes | ZIP entries stored as | NIfTI s | NIfTI files |",
                "|---|---:|---:|---:|---:|---|---:|---:|"]
        for server, rows in runs.items():
            for k, r in enumerate(rows, 1):
                done = f" ({r['zip_to_done_s']})" if "zip_to_done_s" in r else ""
                out.append(f"| {server} | {k} | {r['anonymize_s']} | {r['zip_s']}{done} | {r['zip_bytes']:,} | "
                           f"{r['compression']} | {r.get('nifti_s', 'n/a')} | {r.get('nifti_files', 'n/a')} |")
        methods = {s: rows[0].get("deidentification_method") for s, rows in runs.items() if rows}
        out += [""] + [f"- {server}: DeidentificationMethod `{m or '(none)'}`" for server, m in methods.items()] + [""]
    cohort = research.get("cohort_memory")
    if cohort:
        out += ["## Research: RSS during the cohort export", ""] if not runs else []
        out += [f"- Cohort export (pacsdash): {cohort['instances']:,} instances in {cohort['studies']} studies, "
                f"{cohort['seconds']} s, RSS {cohort['start_mib']} -> peak {cohort['peak_mib']} -> end "
                f"{cohort['end_mib']} MiB over {cohort['samples']} samples ({'flat' if cohort['flat'] else 'GROWING'}, "
                f"limit {cohort['flat_limit']:.0%}); process tree peak {cohort['process_tree']['peak_mib']} MiB", ""]
    out += _notebook_details(results.details.get("notebook", {}))
    out += _scale_details(results.details.get("scale", {}))
    setup = results.details.get("setup", {})
    if setup:
        out += ["## Loading the servers (setup, not a comparable metric)", ""]
        out += [f"- {server}: {text}" for server, text in setup.items()] + [""]
    loads = results.details.get("foreign_load", {})
    if loads:
        before = results.details.get("cpu_busy_before", {})
        retried = results.details.get("discarded_under_load", {})
        out += ["## Measurement conditions (other processes on this machine)", "",
                "| Measurement | CPUs busy just before | other processes' share during | repeated |", "|---|---:|---:|---:|"]
        for where, load in loads.items():
            out.append(f"| {where} | {before.get(where, 0):.0%} | {load['foreign_share']:.0%} | "
                       f"{len(retried.get(where, []))} |")
        out.append("")
    if results.log_issues:
        out += ["## Warnings and errors in server logs", ""]
        for where, lines in results.log_issues.items():
            out.append(f"- {where}: {len(lines)} line(s)")
            out += [f"    - `{ln[:300]}`" for ln in lines[:8]]
        out.append("")
    return "\n".join(out)


def _notebook_details(notebook: dict[str, Any]) -> list[str]:
    """The notebook phase's runs: volume per repetition, cohort per index size with where the time goes."""
    out: list[str] = []
    volume = notebook.get("volume")
    if volume:
        out += ["## Notebook: volume (ms per repetition)", "",
                f"- Client.volume(): {volume['client_ms']} (median {volume['client_median_ms']})",
                f"- plain way (dicomweb-client retrieve_series + pydicom): {volume['plain_ms']} "
                f"(median {volume['plain_median_ms']})",
                f"- ratio {volume['ratio']}; arrays equal: {volume['arrays_equal']}, shape {volume['shape']}, "
                f"{volume['dtype']}",
                "- Client.volume()'s stages and the plain way's request alone, medians (ms): "
                + ", ".join(f"{k} {v}" for k, v in volume.get("breakdown_ms", {}).items()), ""]
    cohorts = {k: v for k, v in notebook.get("cohort", {}).items() if "http" in v or "index" in v}
    if cohorts:
        out += ["## Notebook: cohort (where the time goes)", "",
                "| Instances | series | matches | index MiB | cohort() median ms | runs ms | index queries ms "
                "(pages) | cohort() minus index ms (HTTP, DICOM JSON, DataFrame) | server start s |",
                "|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for size, c in cohorts.items():
            http, index = c.get("http", {}), c.get("index", {})
            out.append(f"| {int(size):,} | {c['series']:,} | {c['expected']:,} | {c.get('index_mib', '')} | "
                       f"{http.get('median_ms', '')} | {http.get('runs_ms', '')} | {index.get('median_ms', '')} "
                       f"({index.get('pages', '')}) | {c.get('outside_index_ms', '')} | {c.get('server_start_s', '')} |")
        out.append("")
    return out


def _scale_details(scale: dict[str, Any]) -> list[str]:
    """The scale phase: each server's medians at both sizes, the ratios, how the rows were generated."""
    rows = []
    for server, entry in scale.items():
        for what in ("base", "large"):
            measured = entry.get(what)
            if not measured:
                continue
            for kind in ("cfind", "qido"):
                for query, r in measured.get(kind, {}).items():
                    name = query.removeprefix("qido_")
                    ratio = entry.get("ratios", {}).get(f"{kind}_{name}", "") if what == "large" else ""
                    rows.append(f"| {server} | {measured['instances']:,} | {'C-FIND' if kind == 'cfind' else 'QIDO-RS'}"
                                f" | {r['label'].removeprefix('QIDO-RS ')} | {r.get('matches', '')} | {r['median_ms']} |"
                                f" {r['p95_ms']} | {ratio} |")
    if not rows:
        return []
    out = ["## Scale details (latency as the index grows; same queries, same answers)", "",
           "| Server | instances | protocol | query | matches | median ms | p95 ms | median / base |",
           "|---|---:|---|---|---:|---:|---:|---:|", *rows, ""]
    for server, entry in scale.items():
        generated = entry.get("generated")
        if generated:
            out.append(f"- {server}: {generated['generated_instances']:,} instances in {generated['generated_studies']:,} "
                       f"studies generated through its Index.add in {generated['seconds']} s "
                       f"({generated['rows_per_s']:,} rows/s); the index then held {generated['index_totals']}; "
                       f"restart {entry.get('restart_s', '?')} s")
    return out + [""]


def write(results: Results, folder: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "latest.json", folder / "latest.md"
    json_path.write_text(json.dumps(results.as_dict(), indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(results) + "\n")
    return json_path, md_path

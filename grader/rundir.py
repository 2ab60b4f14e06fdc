"""The run folder (``grader grade --out DIR``): the one module that knows its layout.

    DIR/<folder>/results.json         Gradescope's schema
    DIR/<folder>/feedback.html        what the student reads
    DIR/<folder>/result.full.json     the full results model; written last, it marks "done"
    DIR/grades.csv                    the gradebook, one row per student
    DIR/report.html                   the class report (`grader report DIR`)
    DIR/.logs/<folder>.log            the checking process's output (staff only)
    DIR/.logs/<folder>.job.json       the job record: student id, notebook, content hash
    DIR/.logs/run.json                the run record: which assignment this folder holds

Student ids come from file and folder names, which students choose. An id becomes a folder
through :func:`assign_folders`: an id that is already a plain name (letters, digits, ``.``,
``_``, ``-``, starting with a letter or digit, at most 64 characters, not one of the run's own
file names) is its own folder; any other id, and an id that differs only in case from one
already placed, gets a slug of itself plus a short hash (``bad-name-3f2a9c1d``). Folders are
unique, a folder once given keeps its id in later runs (the job records say who holds which),
and a derived name never takes the folder of a student whose id is that name. The original id
stays in the results, ``grades.csv`` and the reports.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader._fsutil import NotRegularFile, TooLarge, atomic_write_text, read_regular_file
from grader.errors import ConfigurationError

if TYPE_CHECKING:
    from grader.results import SubmissionResult

RESULT_FILE = "result.full.json"
RESULTS_JSON = "results.json"
FEEDBACK = "feedback.html"
GRADES = "grades.csv"
REPORT = "report.html"
LOGS = ".logs"
RUN_RECORD = "run.json"

MAX_NOTEBOOK_BYTES = 50 * 2**20
"""Notebooks over this size are refused unread (the extractor says so to the student)."""

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RESERVED = frozenset({GRADES, REPORT, "con", "prn", "aux", "nul"})
"""Lower-case names no student folder may take (the run's own files; Windows' device names)."""


@dataclass(frozen=True)
class JobRecord:
    """What the run folder remembers about one graded submission (``.logs/<folder>.job.json``)."""

    student: str
    """The student's id as submitted (file or folder name), shown in grades.csv and reports."""
    folder: str
    """The student's folder under the run folder (see :func:`assign_folders`)."""
    notebook: str
    """Path of the graded notebook."""
    sha256: str | None
    """Hash of the notebook's bytes when it was graded; None when it could not be read."""
    assignment: str
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        return cls(student=str(data["student"]), folder=str(data["folder"]),
                   notebook=str(data["notebook"]),
                   sha256=None if data.get("sha256") is None else str(data["sha256"]),
                   assignment=str(data["assignment"]), profile=str(data["profile"]))


def notebook_sha256(path: Path) -> str | None:
    """The hash of a notebook's bytes, or None when it is no regular file or too large (the
    checking process then gives the student the reason)."""
    try:
        return hashlib.sha256(read_regular_file(path, MAX_NOTEBOOK_BYTES)).hexdigest()
    except (NotRegularFile, TooLarge, OSError):
        return None


def is_plain(student: str) -> bool:
    """Whether ``student`` can be its own folder name."""
    return bool(_PLAIN.fullmatch(student)) and student.lower() not in _RESERVED


def _slug(student: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", student).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-._")[:40].rstrip("-._")
    return slug or "student"


def _derived(student: str, taken: set[str]) -> str:
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()
    slug = _slug(student)
    for length in range(8, len(digest) + 1, 4):
        name = f"{slug}-{digest[:length]}"
        if name.lower() not in taken:
            return name
    raise AssertionError("sha256 collision")  # pragma: no cover


def assign_folders(students: Iterable[str], existing: dict[str, str] | None = None,
                   occupied: Iterable[str] = ()) -> dict[str, str]:
    """A unique, safe folder for each student id.

    ``existing`` maps ids to the folders earlier runs gave them (they keep them); ``occupied``
    lists other names already in the run folder, which nobody new may take. Plain ids are placed
    before derived names, so a renamed submission never takes the folder of a student whose id
    is that name.
    """
    wanted = list(dict.fromkeys(students))
    folders: dict[str, str] = {}
    # A folder already there under a wanted id is that student's, from a run that kept no
    # records; any other name there is taken.
    taken = {name.lower() for name in occupied if name not in wanted}
    for student, folder in (existing or {}).items():
        taken.add(folder.lower())
        if student in wanted:
            folders[student] = folder
    for student in wanted:
        if student not in folders and is_plain(student) and student.lower() not in taken:
            folders[student] = student
            taken.add(student.lower())
    for student in wanted:
        if student not in folders:
            folders[student] = _derived(student, taken)
            taken.add(folders[student].lower())
    return {student: folders[student] for student in wanted}


class RunDir:
    """Paths and records of one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def grades(self) -> Path:
        return self.root / GRADES

    @property
    def training_cache(self) -> Path:
        """The run's training cache (``grader.training_cache``): a dot-folder, so never a
        student's, and under ``--out``, which the sandbox never sees."""
        return self.root / ".cache" / "training"

    def folder(self, folder: str) -> Path:
        return self.root / folder

    def result_path(self, folder: str) -> Path:
        return self.root / folder / RESULT_FILE

    def log_path(self, folder: str) -> Path:
        return self.logs / f"{folder}.log"

    def record_path(self, folder: str) -> Path:
        return self.logs / f"{folder}.job.json"

    def result_paths(self) -> list[Path]:
        """Every finished student's full result, by folder name."""
        return sorted(self.root.glob(f"*/{RESULT_FILE}"))

    def prepare(self, assignment: str) -> None:
        """Make the run folder, or refuse one that cannot hold this run, with the reason."""
        for parent in [self.root, *self.root.parents]:
            if parent.exists() and not parent.is_dir():
                raise ConfigurationError(
                    f"--out {self.root}: {parent} is a file; expected a folder for the results "
                    "(an existing one, or a new name) — choose another --out")
            if parent.exists():
                break
        record = self.logs / RUN_RECORD
        held = None
        if record.is_file():
            try:
                held = json.loads(record.read_text(encoding="utf-8")).get("assignment")
            except (ValueError, AttributeError, OSError):
                held = None
        if held is None:
            held = self._assignment_of_results()
        if held is not None and held != assignment:
            raise ConfigurationError(
                f"--out {self.root} holds the results of assignment {held!r}; expected a folder "
                f"for {assignment!r} — grade each assignment into its own --out folder")
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            atomic_write_text(record, json.dumps({"assignment": assignment}) + "\n")
        except OSError as exc:
            raise ConfigurationError(
                f"--out {self.root}: cannot write there ({exc.strerror}); expected a folder "
                "this user can write — choose another --out") from None

    def _assignment_of_results(self) -> str | None:
        for path in self.result_paths()[:1]:
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get("assignment")
            except (ValueError, AttributeError, OSError):
                return None
            return value if isinstance(value, str) else None
        return None

    def records(self) -> dict[str, JobRecord]:
        """The job records of earlier runs, by student id."""
        found: dict[str, JobRecord] = {}
        if not self.logs.is_dir():
            return found
        for path in sorted(self.logs.glob("*.job.json")):
            try:
                record = JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError, KeyError, OSError):
                continue
            if record.folder == path.name.removesuffix(".job.json") and is_safe(record.folder):
                found[record.student] = record
        return found

    def record(self, folder: str) -> JobRecord | None:
        try:
            data = json.loads(self.record_path(folder).read_text(encoding="utf-8"))
            return JobRecord.from_dict(data)
        except (ValueError, TypeError, KeyError, OSError):
            return None

    def write_record(self, record: JobRecord) -> None:
        atomic_write_text(self.record_path(record.folder), json.dumps(record.to_dict()) + "\n")

    def occupied(self) -> list[str]:
        """Names already in the run folder (student folders of earlier runs, the run's files)."""
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir()]


def is_safe(folder: str) -> bool:
    """Whether ``folder`` is a name :func:`assign_folders` could give (guards records read back)."""
    return bool(_SAFE.fullmatch(folder)) and folder.lower() not in _RESERVED


def write_student_outputs(result: SubmissionResult, folder: Path) -> None:
    """results.json (Gradescope), feedback.html and the full result into ``folder``, each
    written atomically; the full result last, since its presence marks the student done."""
    from grader.export.feedback import write_feedback
    from grader.export.gradescope import write_results_json

    write_results_json(result, folder / RESULTS_JSON)
    write_feedback(result, folder / FEEDBACK)
    result.save(folder / RESULT_FILE)

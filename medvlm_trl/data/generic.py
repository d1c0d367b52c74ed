"""Your own multiple-choice VQA data, read by the `datasets` library and mapped onto contract rows.

A recipe names such data as TRL's scripts do, by what `datasets.load_dataset` accepts as its first argument:

| `dataset_name`                                  | read as                                                         |
|-------------------------------------------------|-----------------------------------------------------------------|
| `csv`, `json`, `parquet`, `arrow`, `imagefolder` | `load_dataset(name, data_files=..., data_dir=...)`: local files  |
| `owner/name` (a hub id)                          | `load_dataset(owner/name, name=dataset_config, ...)`             |
| a local folder or file                          | `load_dataset(path, ...)`: `datasets` infers the format          |

`datasets` parses the files (JSON / JSONL, CSV, Parquet, an image folder with `metadata.csv` / `metadata.jsonl`);
nothing here reads CSV or JSON by hand. `data_files` is one file, a list or a glob; a plain file list is the
`train` split, as `datasets` names it, so a held-out test split comes from `medvlm-trl make-split dataset`.

`dataset_columns` maps the contract's fields onto the data's columns (each key is optional):

    {question: Question, options: [A, B, C, D], answer: Answer, image: Figure, modality: Modality, id: qid,
     source: Origin}

- `question`: the question text (default column `question`).
- `options`: one column holding a list of option texts (default `options`), or a list of columns, one per letter
  (`[A, B, C, D]`; empty trailing cells are dropped, so a 3-option row fits a 4-column file). Without a mapping and
  without an `options` column, columns named `A`, `B`, ... are used.
- `answer`: the correct option's letter or its text (default `answer`). A value that is one of the row's letters
  (`A`.. for n options, upper or lower case) is a letter; any other value must equal exactly one option's text
  (compared case- and space-insensitively). A letter that is also another option's text is an `ambiguous_answer`.
- `image`: a path (relative to `image_root`, default: the folder of the data files), a `data:image/...;base64,`
  string, bytes, or a `datasets` Image (default `image`).
- `modality`: default `modality` when that column exists. Values are normalised like OmniMedVQA's `modality_type`
  ("MR (...)" and "MRI" -> MRI, "CT..." -> CT, "X-Ray" -> X-ray, others keep their own name). Without a column,
  the keyword rule of `medvlm_trl.data.schema.modality_from_text` (question, answer text, image path), else `Other`.
- `id`: default `id` when that column exists, else a content id (`medvlm_trl.data.manifest.content_id`, over the
  image's path or, for image bytes, their SHA-256).
- `source`: default: a constant, the hub id or the data file's (folder's) name.

A mapped column that the data lacks is an error naming the key and the columns that exist. Rows pass the same
checks as every loader's (`medvlm_trl.data.schema.filter_rows`): a bad row raises `BadRowError` naming it, or with
`skip_bad_rows` is dropped and counted. Image paths are checked for existence at load time (`check_images:
exists`), or decoded (`decode`), or not checked (`none`); images are decoded where they are used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvlm_trl.data.images import ImageLoadError, load_image
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.schema import (
    CT,
    MRI,
    XRAY,
    BadRowError,
    SkipReport,
    content_id,
    filter_rows,
    modality_from_text,
    normalize_path,
    normalize_text,
)

logger = logging.getLogger(__name__)

# `datasets`' packaged builders that read local files.
FILE_BUILDERS = ("csv", "json", "parquet", "arrow", "imagefolder")
MAPPING_KEYS = ("question", "options", "answer", "image", "modality", "id", "source")
CHECK_IMAGES = ("exists", "decode", "none")
DEFAULT_MODALITY = "Other"
# Loader keyword arguments (`medvlm_trl.data.registry.load_rows`) of data read through `datasets`.
LOADER_KWARGS = {"data_files", "dataset_config", "dataset_columns", "image_root", "check_images"}
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None and not os.path.isabs(name)


def is_generic(name: str) -> bool:
    """Whether `name` is read by this module: a packaged `datasets` builder, a hub id or an existing local path."""
    return name in FILE_BUILDERS or _looks_like_hub_id(name) or Path(name).expanduser().exists()


def normalize_modality(value: str) -> str:
    """A data's own modality name in the contract's spelling where it is MRI / CT / X-ray; others as written.

    >>> normalize_modality("MR (Mag-netic Resonance Imaging)"), normalize_modality("xray"), normalize_modality("OCT")
    ('MRI', 'X-ray', 'OCT')
    """
    letters = re.sub(r"[^a-z]", "", value.lower())  # OmniMedVQA's own "Mag-netic" typo reads as "magnetic"
    if letters in ("mr", "mri") or letters.startswith(("mrmag", "mrimag")) or "magneticresonance" in letters:
        return MRI
    if letters == "ct" or letters.startswith("ctcomputed") or "computedtomography" in letters:
        return CT
    if letters in ("xray", "xrays", "radiograph", "radiography") or letters.startswith("xray"):
        return XRAY
    return value.strip()


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds each contract field (see the module docstring); `None`: not in the data."""

    question: str = "question"
    options: str | tuple[str, ...] = "options"
    answer: str = "answer"
    image: str = "image"
    modality: str | None = None
    id: str | None = None
    source: str | None = None

    def to_dict(self) -> dict:
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k in MAPPING_KEYS if (v := getattr(self, k)) is not None
        }


def parse_columns(value: dict | str | None, key: str = "dataset_columns") -> dict:
    """The recipe's mapping as a dict (YAML gives a mapping, the command line a JSON string); unknown keys refused."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{key} must be a mapping or a JSON object, got {value!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping of {list(MAPPING_KEYS)} to column names, got {value!r}")
    unknown = sorted(set(value) - set(MAPPING_KEYS))
    if unknown:
        raise ValueError(f"{key}: unknown key(s) {unknown}; the keys are {list(MAPPING_KEYS)}")
    for name, column in value.items():
        if name == "options" and isinstance(column, (list, tuple)):
            if not column or not all(isinstance(c, str) and c for c in column):
                raise ValueError(f"{key}['options'] must be a column name or a list of column names, got {column!r}")
        elif not isinstance(column, str) or not column:
            raise ValueError(f"{key}[{name!r}] must be a column name, got {column!r}")
    return dict(value)


def resolve_columns(mapping: dict, columns: Sequence[str], key: str = "dataset_columns") -> ColumnMap:
    """The mapping checked against the data's columns, defaults filled in; a missing column names the key."""
    columns = list(columns)

    def need(name: str, column: str) -> str:
        if column not in columns:
            if name in mapping:
                raise ValueError(
                    f"{key}[{name!r}] is {column!r}, but the data has no such column; its columns are {columns}"
                )
            raise ValueError(f"the data has no {column!r} column (set {key}[{name!r}]); its columns are {columns}")
        return column

    question = need("question", mapping.get("question", "question"))
    answer = need("answer", mapping.get("answer", "answer"))
    image = need("image", mapping.get("image", "image"))
    options: str | tuple[str, ...]
    if "options" in mapping:
        given = mapping["options"]
        if isinstance(given, (list, tuple)):
            missing = [c for c in given if c not in columns]
            if missing:
                raise ValueError(
                    f"{key}['options'] names column(s) {missing} that the data lacks; its columns are {columns}"
                )
            options = tuple(given)
        else:
            options = need("options", given)
    elif "options" in columns:
        options = "options"
    else:
        letters = []
        for letter in LETTERS:
            if letter not in columns:
                break
            letters.append(letter)
        if len(letters) < 2:
            raise ValueError(
                f"no 'options' column and no option columns A, B, ... (set {key}['options'] to a column holding a "
                f"list, or to a list of columns, one per letter); the data's columns are {columns}"
            )
        options = tuple(letters)
    optional = {}
    for name in ("modality", "id", "source"):
        if name in mapping:
            optional[name] = need(name, mapping[name])
        else:
            optional[name] = name if name in columns and name != "source" else None
    return ColumnMap(question=question, options=options, answer=answer, image=image, **optional)


def _text(value: Any) -> str | None:
    """A cell as text: numbers read as their text, None and NaN (an empty CSV cell) as None."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _options(record: dict, cmap: ColumnMap, where: str) -> list[str]:
    if isinstance(cmap.options, tuple):
        values = [_text(record.get(c)) for c in cmap.options]
        while values and (values[-1] is None or not values[-1].strip()):
            values.pop()  # a 3-option row in a file with 4 option columns
        return [(v or "").strip() for v in values]
    value = record.get(cmap.options)
    if not isinstance(value, (list, tuple)):
        raise BadRowError(
            where,
            "option_count",
            f"column {cmap.options!r} holds {type(value).__name__}, not a list of options (one column per letter: "
            "map `options` to a list of columns)",
        )
    for i, option in enumerate(value):
        if option is None or isinstance(option, (bool, list, tuple, dict)):
            raise BadRowError(where, "empty_option", f"option {i} is {option!r}")
    return [str(o).strip() for o in value]


def answer_letter(value: Any, options: Sequence[str], row_id: str) -> str:
    """The correct option's letter from a letter or an option's text; see the module docstring for the rule.

    >>> answer_letter("b", ["CT", "MRI"], "q1"), answer_letter("MRI", ["CT", "MRI"], "q1")
    ('B', 'B')
    """
    text = _text(value)
    if text is None or not text.strip():
        raise BadRowError(row_id, "answer_not_in_options", "no answer")
    text = text.strip()
    letters = LETTERS[: len(options)]
    texts = [normalize_text(o) for o in options]
    matches = [i for i, t in enumerate(texts) if t == normalize_text(text)]
    if len(text) == 1 and text.upper() in letters:
        letter = text.upper()
        if matches and LETTERS[matches[0]] != letter:
            raise BadRowError(
                row_id,
                "ambiguous_answer",
                f"answer {text!r} is letter {letter} and the text of option {LETTERS[matches[0]]}",
            )
        return letter
    if len(matches) == 1:
        return LETTERS[matches[0]]
    if len(matches) > 1:
        raise BadRowError(row_id, "ambiguous_answer", f"answer {text!r} is the text of {len(matches)} options")
    if len(text) == 1 and text.upper() in LETTERS:  # a letter beyond the options: as the row check words it
        raise BadRowError(row_id, "answer_not_in_options", f"answer {text!r}, letters {letters}")
    raise BadRowError(row_id, "answer_not_in_options", f"answer {text!r}, options {list(options)}")


def _image(value: Any, root: Path | None, where: str) -> tuple[Any, str | None, str]:
    """`(image for the row, image file as the data names it or None, key for the content id)`."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise BadRowError(where, "multi_image", f"{len(value)} images; one image per question is supported")
        value = value[0]
    if isinstance(value, dict):  # a `datasets` Image read without decoding: {"bytes": ..., "path": ...}
        value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
    if isinstance(value, str) and _DATA_URI.match(value.strip()):
        try:
            value = base64.b64decode(value.strip().split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError) as err:
            raise BadRowError(where, "unreadable_image", f"bad base64 image data ({err})") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise BadRowError(where, "missing_image", "empty image bytes")
        return data, None, "sha256-" + hashlib.sha256(data).hexdigest()[:16]
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        path = Path(str(value).strip()).expanduser()
        if path.is_absolute():
            name = normalize_path(path.relative_to(root) if root and path.is_relative_to(root) else path.name)
            return str(path), name, name
        name = normalize_path(str(path))
        if root is None:
            raise BadRowError(where, "missing_image", f"relative image path {name!r} and no image_root to read it from")
        return str(root / name), name, name
    if value is not None and hasattr(value, "tobytes") and hasattr(value, "size"):  # an already decoded PIL image
        digest = hashlib.sha256(value.tobytes() + repr(value.size).encode()).hexdigest()[:16]
        return value, None, "pixels-" + digest
    raise BadRowError(where, "missing_image", f"image is {type(value).__name__}, not a path, bytes or an image")


def row_from_record(record: dict, index: int, cmap: ColumnMap, root: Path | None, source: str) -> dict:
    """One record of the data as a contract row, or `BadRowError` naming it (by position until it has an id)."""
    where = f"#{index}"
    if cmap.id is not None:
        row_id = _text(record.get(cmap.id))
        if row_id is None or not row_id.strip():
            raise BadRowError(where, "missing_id", f"column {cmap.id!r} is empty")
        where = row_id = row_id.strip()
    question = _text(record.get(cmap.question))
    question = (question or "").strip()
    options = _options(record, cmap, where)
    image, image_file, image_key = _image(record.get(cmap.image), root, where)
    if cmap.source is not None:
        source = (_text(record.get(cmap.source)) or "").strip() or source
    if cmap.id is None:
        row_id = content_id(source, image_key, question, options)
    answer = answer_letter(record.get(cmap.answer), options, row_id)
    answer_text = options[LETTERS.index(answer)]
    stated = _text(record.get(cmap.modality)) if cmap.modality is not None else None
    if stated is not None and stated.strip():
        modality, modality_from = normalize_modality(stated), "column"
    elif cmap.modality is not None and record.get(cmap.modality) is not None and stated is None:
        modality, modality_from = record.get(cmap.modality), "column"  # not text: check_row names it
    else:
        derived = modality_from_text(question, answer_text, image_file)
        modality = derived[0] if derived else DEFAULT_MODALITY
        modality_from = ("question", "answer", "image_path")[derived[1]] if derived else "default"
    row = {
        "id": row_id,
        "image": image,
        "question": question,
        "options": options,
        "answer": answer,
        "modality": modality,
        "modality_from": modality_from,
        "source": source,
    }
    if image_file is not None:
        row["image_file"] = image_file
    return row


def image_check(mode: str):
    """The load-time image check of `check_images` (`exists` or `decode`) as a `filter_rows` extra check."""

    def check(row: dict) -> None:
        image = row["image"]
        if mode == "exists" and isinstance(image, str) and not os.path.isfile(image):
            raise BadRowError(row["id"], "missing_image", image)
        if mode == "decode":
            try:
                load_image(image, row_id=row["id"])
            except ImageLoadError as err:
                reason = "missing_image" if "not found" in str(err) else "unreadable_image"
                raise BadRowError(row["id"], reason, str(err)) from err

    return check


def converted_rows(
    records, cmap: ColumnMap, root: Path | None, source: str, skip_bad_rows: bool, report: SkipReport, start: int = 0
) -> Iterator[dict]:
    """Contract rows of `records` (a `datasets.Dataset` or dicts); a bad one raises, or is counted and skipped."""
    for index, record in enumerate(records, start=start):
        try:
            yield row_from_record(record, index, cmap, root, source)
        except BadRowError as err:
            if not skip_bad_rows:
                raise
            report.add(err)


def _local_files(data_files: Any) -> list[Path]:
    if data_files is None:
        return []
    values = list(data_files.values()) if isinstance(data_files, dict) else [data_files]
    flat: list[str] = []
    for value in values:
        flat += [value] if isinstance(value, str) else list(value)
    return [Path(f).expanduser() for f in flat if not re.match(r"^\w+://", f)]


def default_image_root(dataset_name: str, data_files: Any, data_dir: str | None) -> Path | None:
    """Where relative image paths are read from: the data files' folder, else `data_dir`, else a local
    `dataset_name` folder (or a file's folder)."""
    files = _local_files(data_files)
    if files:
        parents = {f.parent.resolve() for f in files}
        if len(parents) == 1:
            return parents.pop()
        return None  # several folders: rows' relative paths are ambiguous, image_root must say
    if data_dir and Path(data_dir).expanduser().is_dir():
        return Path(data_dir).expanduser().resolve()
    path = Path(dataset_name).expanduser()
    if path.exists():
        return (path if path.is_dir() else path.parent).resolve()
    return None


def default_source(dataset_name: str, data_files: Any, data_dir: str | None) -> str:
    """The rows' `source` when no column names it: a hub id as is, else the data file's (or folder's) name."""
    files = _local_files(data_files)
    if files:
        return files[0].stem if len(files) == 1 else files[0].parent.name or files[0].stem
    if _looks_like_hub_id(dataset_name) and not Path(dataset_name).exists():
        return dataset_name
    if data_dir:
        return Path(data_dir).name
    return Path(dataset_name).stem or dataset_name


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def load_dataset_split(dataset_name: str, split: str, *, data_files=None, data_dir=None, dataset_config=None):
    """One split of a dataset, read by `datasets.load_dataset`; a failure is one `ValueError` line naming it."""
    import datasets

    kwargs = {"name": dataset_config, "data_dir": data_dir, "data_files": data_files}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if dataset_name in FILE_BUILDERS and data_files is None and data_dir is None:
        raise ValueError(f"dataset_name {dataset_name!r} reads local files: set data_files (or data_dir)")
    for path in _local_files(data_files):
        if not any(ch in path.name for ch in "*?[") and not path.exists():
            raise FileNotFoundError(f"data_files: no such file {path}")
    try:
        loaded = datasets.load_dataset(dataset_name, **kwargs)
    except Exception as err:  # datasets raises many types (DatasetNotFoundError, pyarrow's, ...): one line naming it
        raise ValueError(f"datasets could not load {dataset_name!r} ({_one_line(err)})") from err
    if split not in loaded:
        raise ValueError(
            f"{dataset_name!r} has split(s) {sorted(loaded)}, not {split!r}; a plain list of data files is the "
            "'train' split: draw a test split with `medvlm-trl make-split dataset` and pass its manifest as split_file"
        )
    return loaded[split]


def load_generic(
    dataset_name: str,
    split: str,
    *,
    data_files: Any = None,
    data_dir: str | os.PathLike | None = None,
    dataset_config: str | None = None,
    dataset_columns: dict | str | None = None,
    image_root: str | os.PathLike | None = None,
    check_images: str = "exists",
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
    source: str | None = None,
) -> list[dict]:
    """Contract rows of one split of any dataset `datasets` can load; see the module docstring."""
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, not {check_images!r}")
    parse_columns(dataset_columns)  # a bad mapping is refused before any file is read
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    ds = load_dataset_split(
        dataset_name, split, data_files=data_files, data_dir=data_dir, dataset_config=dataset_config
    )
    root = Path(image_root).expanduser() if image_root is not None else None
    return rows_from_dataset(
        ds,
        dataset_columns=dataset_columns,
        image_root=root or default_image_root(dataset_name, data_files, data_dir),
        source=source or default_source(dataset_name, data_files, data_dir),
        check_images=check_images,
        skip_bad_rows=skip_bad_rows,
        report=report,
    )


def rows_from_dataset(
    ds,
    *,
    dataset_columns: dict | str | None = None,
    image_root: str | os.PathLike | None = None,
    source: str = "dataset",
    check_images: str = "exists",
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
) -> list[dict]:
    """Contract rows of a `datasets.Dataset` already in hand (what `load_generic` does once it has loaded one).

    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"question": ["Which?"], "options": [["CT", "MRI"]], "answer": ["MRI"],
    ...                         "image": [b"PNG bytes"]})
    >>> rows_from_dataset(ds, source="mine")[0]["answer"]
    'B'
    """
    from datasets import Image

    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, not {check_images!r}")
    cmap = resolve_columns(parse_columns(dataset_columns), ds.column_names)
    if isinstance(ds.features.get(cmap.image), Image):
        ds = ds.cast_column(cmap.image, Image(decode=False))  # lazy: bytes or a path, decoded where used
    root = Path(image_root).expanduser().resolve() if image_root is not None else None
    report = report if report is not None else SkipReport()
    converted = converted_rows(ds, cmap, root, source, skip_bad_rows, report)
    extra = None if check_images == "none" else image_check(check_images)
    rows = list(filter_rows(converted, skip_bad_rows, report, extra))
    if report.total:
        logger.warning("%s: %s", source, report)
    return rows


def data_settings(
    dataset_name: str,
    *,
    data_files: Any = None,
    data_dir: str | None = None,
    dataset_config: str | None = None,
    dataset_columns: dict | str | None = None,
    image_root: str | None = None,
) -> dict:
    """The data description a split manifest records, so that `eval --split MANIFEST` reads the same rows."""
    settings = {
        "dataset_name": dataset_name,
        "data_files": data_files,
        "data_dir": data_dir,
        "dataset_config": dataset_config,
        "dataset_columns": parse_columns(dataset_columns) or None,
        "image_root": image_root,
    }
    return {k: v for k, v in settings.items() if v is not None}


def script_data_kwargs(args: Any) -> dict:
    """The data-reading keyword arguments of a recipe's (or eval's) dataclass for `load_rows`: only those set.

    They only make sense for data read through `datasets` (and OmniMedVQA's `image_root`); setting one for a named
    loader such as `huatuo` is an error naming the key.
    """
    from medvlm_trl.data.registry import loader_kwargs

    name = getattr(args, "dataset_name", None) or getattr(args, "dataset", None)
    keys = ("data_files", "dataset_config", "dataset_columns", "image_root")
    given = {k: getattr(args, k) for k in keys if getattr(args, k, None) not in (None, "", [])}
    if name is None:
        return given
    allowed = loader_kwargs(name)
    refused = sorted(set(given) - allowed)
    if refused:
        raise ValueError(
            f"{', '.join(refused)}: not an option of dataset {name!r}; they describe data read through `datasets` "
            f"(dataset_name csv, json, parquet, imagefolder, a hub id or a local path)"
        )
    return given


def check_manifest_data(manifest: Any, kw: dict, label: str) -> None:
    """A split file made from data read with one column mapping must be read with the same one: with an `id`
    column the ids would still match while questions, answers or images came from other columns."""
    made = (manifest.settings.get("data") or {}).get("dataset_columns") or {}
    given = parse_columns(kw.get("dataset_columns"))

    def plain(mapping: dict) -> dict:
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in mapping.items()}

    if plain(made) != plain(given):
        raise ValueError(f"split file {label} was made with dataset_columns {plain(made)}, not {plain(given)}")


def dataset_label(args: Any) -> str:
    """How a model card names the training data: the dataset name, with the data files' names where given.

    >>> from types import SimpleNamespace
    >>> dataset_label(SimpleNamespace(dataset_name="csv", data_files=["data/questions.csv"], dataset_config=None))
    'csv (questions.csv)'
    """
    name = str(args.dataset_name)
    parts = [Path(f).name for f in (getattr(args, "data_files", None) or [])]
    if getattr(args, "dataset_config", None):
        parts.insert(0, f"config {args.dataset_config}")
    return f"{name} ({', '.join(parts)})" if parts else name

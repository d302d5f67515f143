import argparse
import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

from torchtune._cli.subcommand import CLIError, Subcommand

# As in torchtune, nothing is skipped by default: which copy of the weights is the duplicate depends on
# the family, so each config's header passes its own pattern. What the shipped configs pass:
FAMILY_IGNORE_PATTERNS = {
    "Llama 2, Code Llama 2, Mistral (the configs read the .bin shards)": "*.safetensors",
    "Llama 3, 3.1, 3.2, 3.3 (Meta's consolidated checkpoint under original/)": "original/consolidated.00.pth",
}


def _status(err: BaseException) -> Optional[int]:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _first_line(err: BaseException) -> str:
    return next(iter(str(err).splitlines()), "")


def _explain(err: BaseException, repo_id: str, has_token: bool) -> str:
    """Turn a huggingface_hub error into one line that says what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = f"{constants.ENDPOINT}/{repo_id}"
    token_hint = (
        f"pass a token with --hf-token or set HF_TOKEN (create one at {constants.ENDPOINT}/settings/tokens)"
    )
    # snapshot_download wraps some HTTP errors (e.g. 403) in LocalEntryNotFoundError.
    if isinstance(err, LocalEntryNotFoundError) and isinstance(err.__cause__, HfHubHTTPError):
        err = err.__cause__
    status = _status(err)
    if isinstance(err, GatedRepoError):
        if has_token:
            return (
                f"{repo_id} is a gated repo and your token has not been granted access ({status}): "
                f"request access at {url} and retry once it is approved"
            )
        return f"{repo_id} is a gated repo ({status}): request access at {url}, then {token_hint}"
    # The Hub answers 401 for private and gated repos alike when no valid token is sent.
    if isinstance(err, HfHubHTTPError) and status == 401:
        return (
            f"not authorized to access {repo_id} (401): it is private or gated, or the token is "
            f"invalid; {token_hint}, using an account that can see {url}"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"{repo_id} has no such revision ({status}); check the branch, tag or commit"
    if isinstance(err, RepositoryNotFoundError) or status == 404:
        return (
            f"repository {repo_id} not found ({status}): check the repo id (namespace/name, e.g. "
            "meta-llama/Llama-2-7b-hf); if it is private, " + token_hint
        )
    if isinstance(err, HfHubHTTPError) and status == 403:
        if has_token:
            return f"access to {repo_id} is forbidden (403): your token lacks permission for this repo"
        return f"access to {repo_id} is forbidden (403): no token was sent; {token_hint}"
    if isinstance(err, HfHubHTTPError):
        return f"downloading {repo_id} failed with HTTP {status}: {_first_line(err)}"
    if isinstance(err, LocalEntryNotFoundError):
        return (
            f"could not reach {constants.ENDPOINT} to download {repo_id}; "
            "check your network connection (or HF_ENDPOINT)"
        )
    return f"downloading {repo_id} failed: {type(err).__name__}: {_first_line(err)}"


def _list_files(folder: Path) -> List[str]:
    # huggingface_hub keeps its bookkeeping in <local_dir>/.cache; it is not part of the model.
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    )


def _report(repo_id: str, folder: Path) -> int:
    """Print where the files went, one per line; the command's exit status."""
    files = _list_files(folder)
    print(f"Downloaded {repo_id} to {folder} ({len(files)} files):")
    for name in files:
        print(f"  {folder / name}")
    return 0


class DownloadCommand(Subcommand):
    name = "download"
    summary = "Download a model from the Hugging Face Hub or Kaggle"
    description = (
        "Download a model repo snapshot from the Hugging Face Hub into a local directory.\n"
        "Gated models (such as Meta's Llama) need a token of an account that was granted\n"
        "access: pass --hf-token or set HF_TOKEN. Every file is downloaded unless\n"
        "--ignore-patterns says otherwise; many repos hold the weights twice, and each built-in\n"
        "config's header gives the pattern that skips the copy its recipe does not read.\n"
        "With --source kaggle, repo_id is a Kaggle model handle (owner/model/framework/variation)\n"
        "downloaded with the kagglehub package; credentials come from --kaggle-username and\n"
        "--kaggle-api-key, else KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json."
    )
    examples = (
        "  tune download meta-llama/Llama-2-7b-hf --output-dir /tmp/Llama-2-7b-hf \\\n"
        '      --ignore-patterns "*.safetensors" --hf-token <HF_TOKEN>\n'
        "  HF_TOKEN=<HF_TOKEN> tune download meta-llama/Llama-2-7b-hf\n"
        "  tune download google/gemma/pyTorch/2b --source kaggle --output-dir /tmp/gemma-2b\n"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("repo_id", help="Hub repo id, e.g. meta-llama/Llama-2-7b-hf")
        parser.add_argument(
            "--output-dir",
            type=Path,
            default=None,
            help="directory to write the files to (default: <tmpdir>/<repo name>, e.g. /tmp/Llama-2-7b-hf)",
        )
        parser.add_argument(
            "--hf-token",
            default=None,
            help="Hugging Face access token (default: the HF_TOKEN environment variable, "
            "then the token saved by `hf auth login`)",
        )
        parser.add_argument(
            "--ignore-patterns",
            nargs="*",
            default=None,
            metavar="PATTERN",
            help="glob patterns of files not to download, e.g. '*.safetensors' (default: none, download "
            "everything). The built-in configs pass: "
            + "; ".join(f"{pattern!r} for {family}" for family, pattern in FAMILY_IGNORE_PATTERNS.items()),
        )
        parser.add_argument(
            "--source",
            choices=["huggingface", "kaggle"],
            default="huggingface",
            help="where to download from (default: huggingface)",
        )
        parser.add_argument(
            "--kaggle-username",
            default=None,
            help="Kaggle user name (--source kaggle; default: KAGGLE_USERNAME or ~/.kaggle/kaggle.json)",
        )
        parser.add_argument(
            "--kaggle-api-key",
            default=None,
            help="Kaggle API key (--source kaggle; default: KAGGLE_KEY or ~/.kaggle/kaggle.json)",
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.source == "kaggle":
            return _download_from_kaggle(args)
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError

        from torchtune import __version__

        if constants.HF_HUB_OFFLINE:
            raise CLIError("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it and retry")
        token = args.hf_token or os.environ.get("HF_TOKEN") or None
        output_dir = args.output_dir or Path(tempfile.gettempdir()) / args.repo_id.split("/")[-1]
        try:
            folder = snapshot_download(
                args.repo_id,
                local_dir=output_dir,
                ignore_patterns=args.ignore_patterns or None,
                token=token,
                library_name="torchtune",
                library_version=__version__,
            )
        except HFValidationError as err:
            raise CLIError(f"'{args.repo_id}' is not a valid repo id: {_first_line(err)}") from None
        except (HfHubHTTPError, EntryNotFoundError, OSError) as err:
            raise CLIError(_explain(err, args.repo_id, has_token=token is not None)) from None
        return _report(args.repo_id, Path(folder))


def _download_from_kaggle(args: argparse.Namespace) -> int:
    """Download a Kaggle model with kagglehub (into its cache, then ``--output-dir`` if given).

    Raises:
        CLIError: without kagglehub, with only one of the two credentials, or when Kaggle refuses.
    """
    try:
        kagglehub = importlib.import_module("kagglehub")
    except ImportError:
        raise CLIError("--source kaggle needs the kagglehub package: pip install kagglehub") from None
    if (args.kaggle_username is None) != (args.kaggle_api_key is None):
        raise CLIError("pass both --kaggle-username and --kaggle-api-key, or neither")
    if args.kaggle_username is not None:
        # kagglehub reads these variables when no other credentials are configured.
        os.environ["KAGGLE_USERNAME"] = args.kaggle_username
        os.environ["KAGGLE_KEY"] = args.kaggle_api_key
    try:
        folder = Path(kagglehub.model_download(args.repo_id))
    except Exception as err:  # kagglehub raises its own HTTP and validation errors
        raise CLIError(f"Kaggle download of '{args.repo_id}' failed: {_first_line(err)}") from None
    if args.output_dir is not None:
        shutil.copytree(folder, args.output_dir, dirs_exist_ok=True)
        folder = Path(args.output_dir)
    return _report(args.repo_id, folder)

"""`atelier feedback export DIR`: what the community made and preferred, as training data.

Only what its people allowed (users.training_consent, off by default) leaves the server:
- DIR/images/<id>.png + <id>.txt (the prompt): published images, not hidden by a moderator, of
  users who consented. The layout `atelier train model --data DIR` reads (atelier.train.data).
- DIR/preferences.jsonl: one pair per line, {"prompt", "chosen", "rejected", "signal"}, paths
  relative to DIR, images in DIR/pairs/ (no captions there, so the trainer's folder reader skips
  them). "keep": a user kept one of the images a job made them, the job's others are rejected;
  "like": a user liked a published image of a job and not a published sibling of it. Pairs are
  from consenting users about consenting owners' images: the preference format of Diffusion-DPO
  (Wallace et al., 2023) and Pick-a-Pic (Kirstain et al., 2023), ready for a preference objective.
- DIR/manifest.json: when, how many, and the rule that chose them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from atelier.server.db import Database
from atelier.server.models import Asset
from atelier.server.storage import Storage
from atelier.server.stores import community

RULE = ("images: published, not hidden, owner consented; pairs: the feedback of consenting users on images of "
        "consenting owners (keep: the kept image over its job's others; like: a liked published image over an "
        "unliked published sibling)")


def export(db: Database, storage: Storage, out: Path) -> dict[str, Any]:
    """Write the training set to `out` (a new or empty folder); its manifest."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; export into a new folder so no older export mixes in")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "pairs").mkdir(exist_ok=True)
    with db.session() as session:
        published = community.published_by_consenting(session)
        pairs = _pairs(session)
    images = 0
    for asset in published:
        prompt = (asset.info.get("prompt") or "").strip()
        if not prompt:        # a caption is what the image teaches; an unconditional one teaches nothing here
            continue
        (out / "images" / f"{asset.id}.png").write_bytes(storage.get(asset.path))
        (out / "images" / f"{asset.id}.txt").write_text(prompt + "\n")
        images += 1
    copied: set[str] = set()
    with open(out / "preferences.jsonl", "w") as lines:
        for prompt, chosen, rejected, signal in pairs:
            for asset in (chosen, rejected):
                if asset.id not in copied:
                    (out / "pairs" / f"{asset.id}.png").write_bytes(storage.get(asset.path))
                    copied.add(asset.id)
            lines.write(json.dumps({"prompt": prompt, "chosen": f"pairs/{chosen.id}.png",
                                    "rejected": f"pairs/{rejected.id}.png", "signal": signal}) + "\n")
    manifest = {"exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "images": images,
                "pairs": len(pairs), "pair_images": len(copied), "rule": RULE}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _pairs(session) -> list[tuple[str, Asset, Asset, str]]:
    """(prompt, chosen, rejected, signal) for every preference the consent rule lets out."""
    consenting = community.consenting_user_ids(session)
    pairs, seen = [], set()

    def add(chosen: Asset, rejected: Asset, signal: str) -> None:
        if (chosen.id, rejected.id) not in seen and chosen.user_id in consenting:
            seen.add((chosen.id, rejected.id))
            pairs.append((chosen.info.get("prompt", ""), chosen, rejected, signal))

    for feedback, chosen in community.keeps_by(session, consenting):
        kept_ids = community.kept_asset_ids(session, feedback.user_id)
        for rejected in community.job_assets_except(session, chosen.job_id, kept_ids):
            add(chosen, rejected, "keep")
    for like, chosen in community.likes_of_public_job_assets(session, consenting):
        liked_ids = community.liked_asset_ids(session, like.user_id)
        for rejected in community.public_job_assets_except(session, chosen.job_id, liked_ids):
            add(chosen, rejected, "like")
    return pairs

"""Captions are true of their scenes, and the held-out splits never leak into training."""

import random

import pytest

from atelier.world import vocab
from atelier.world.images import evalset
from atelier.world.images.caption import (
    HELD_OUT,
    PLURALS,
    TRAIN,
    describe,
    held_out_words,
    say,
    train_vocabulary,
    words,
)
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Query, RelationQuery
from atelier.world.images.scene import contrasts, realize, sample_scene
from atelier.world.images.stream import WorldStream
from atelier.world.splits import HELD_OUT_COUNTS, HELD_OUT_PAIRS, HELD_OUT_RELATIONS, held_out_facts

TRAIN_SAMPLES = 6000


@pytest.fixture(scope="module")
def training_samples():
    return list(WorldStream(seed=11, limit=TRAIN_SAMPLES))


def test_captions_are_true_of_their_scenes(training_samples):
    for sample in training_samples:
        assert sample.query.satisfied_by(sample.scene.objects, sample.scene.background), sample.caption


def test_captions_vary(training_samples):
    captions = [s.caption for s in training_samples]
    assert len(set(captions)) > 0.9 * len(captions)
    joined = " ".join(captions)
    for phrase in ("there is", "to the left of", "gradient", "checkered", "with stripes", "three", "four"):
        assert phrase in joined.lower()


def test_training_never_shows_a_held_out_fact(training_samples):
    for sample in training_samples:
        assert held_out_facts(sample.scene.objects) == [], sample.caption


def test_training_captions_never_use_a_held_out_word(training_samples):
    reserved = held_out_words()
    vocabulary = train_vocabulary()
    for sample in training_samples:
        caption_words = set(words(sample.caption))
        assert not caption_words & reserved, sample.caption
        assert caption_words <= vocabulary, caption_words - vocabulary


def test_held_out_words_are_real_synonyms():
    reserved = held_out_words()
    assert {"crimson", "grey", "beneath", "backdrop", "2"} <= reserved
    assert not reserved & train_vocabulary()


def test_split_all_does_yield_held_out_facts():
    facts = [f for i in range(4000) for f in held_out_facts(sample_scene(random.Random(i), split="all").objects)]
    assert any(f.startswith("pair") for f in facts) and any(f.startswith("relation") for f in facts)


def test_the_committed_eval_set_is_the_generated_one():
    built = evalset.build()
    loaded = evalset.load()
    assert [p.to_dict() for p in built] == [p.to_dict() for p in loaded]


def test_eval_set_is_balanced_and_tagged():
    prompts = evalset.load()
    assert len(prompts) >= 600
    for category in evalset.CATEGORIES:
        assert sum(p.category == category for p in prompts) == evalset.PROMPTS_PER_CATEGORY
    sizes = evalset.subset_sizes(prompts)
    assert sizes == {"seen": 488, "held_out_pairs": 48, "held_out_combos": 40, "held_out_phrasings": 72}
    reserved = held_out_words()
    for p in prompts:
        pairs = {(g.colour, g.shape) for g in p.query.objects} & HELD_OUT_PAIRS
        counts = {(g.count, g.shape) for g in p.query.objects} & HELD_OUT_COUNTS
        relations = {(p.query.objects[r.subject].shape, r.relation, p.query.objects[r.reference].shape)
                     for r in p.query.relations} & HELD_OUT_RELATIONS
        assert bool(pairs) == (p.subset == "held_out_pairs"), p.text
        assert bool(counts or relations) == (p.subset == "held_out_combos"), p.text
        assert bool(set(words(p.text)) & reserved) == (p.subset == "held_out_phrasings"), p.text


def test_every_eval_prompt_can_be_drawn_within_the_worlds_rules():
    for p in evalset.load()[::3]:
        scene = realize(p.query, random.Random(0))
        assert len(scene.objects) == sum(g.count for g in p.query.objects)
        assert len({o.region for o in scene.objects}) == len(scene.objects)
        for obj in scene.objects:
            assert obj.texture in vocab.textures_for(obj.shape, obj.size)
            assert contrasts(obj, scene.background)


def _synonyms(table: str, key) -> set[str]:
    return set(getattr(TRAIN, table).get(key, ())) | set(getattr(HELD_OUT, table).get(key, ()))


def _says(text: str, phrases: set[str]) -> bool:
    """Whether any phrase occurs in the text as whole words."""
    padded = f" {' '.join(words(text))} "
    return any(f" {' '.join(words(phrase))} " in padded for phrase in phrases)


def test_eval_prompt_texts_say_their_queries():
    for p in evalset.load():
        for group in p.query.objects:
            nouns = _synonyms("shapes", group.shape)
            assert _says(p.text, nouns | {PLURALS.get(n, n + "s") for n in nouns}), (p.text, group)
            for table, value in (("colours", group.colour), ("sizes", group.size), ("regions", group.region)):
                if value:
                    assert _says(p.text, _synonyms(table, value)), (p.text, table, value)
            if group.texture:
                said = _synonyms("texture_adjectives", group.texture) | _synonyms("texture_phrases", group.texture)
                assert _says(p.text, said), (p.text, group)
            if group.count > 1:
                assert _says(p.text, _synonyms("counts", group.count)), (p.text, group)
        for rel in p.query.relations:
            assert _says(p.text, _synonyms("relations", rel.relation)), (p.text, rel)
        if p.query.background and p.query.background.colours:
            for colour in p.query.background.colours:
                assert _says(p.text, _synonyms("colours", colour)), (p.text, colour)


def test_grammar_examples():
    rng = random.Random(0)
    query = Query((ObjectQuery("arrow", colour="orange"),), background=BackgroundQuery("solid", ("orange",)))
    texts = {say(query, rng) for _ in range(50)}
    assert all("an orange arrow" in t.lower() or "one orange arrow" in t.lower() for t in texts)
    assert all("a orange" not in t.lower() for t in texts)
    rel = Query((ObjectQuery("star"), ObjectQuery("circle")), relations=(RelationQuery(0, "above", 1),))
    assert any("star above a circle" in say(rel, rng) for _ in range(30))
    assert any("disk" in say(rel, rng, held_out=True) for _ in range(30))


def test_describe_counts_identical_objects():
    for i in range(300):
        scene = sample_scene(random.Random(i))
        query = describe(scene, random.Random(i))
        assert sum(g.count for g in query.objects) == len(scene.objects)


def test_queries_reject_what_the_world_cannot_say():
    with pytest.raises(ValueError, match="unknown shape"):
        ObjectQuery("dodecahedron")
    with pytest.raises(ValueError, match="single object"):
        ObjectQuery("star", count=2, region="top left")
    with pytest.raises(ValueError, match="at most"):
        Query((ObjectQuery("star", count=3), ObjectQuery("circle", count=2)))
    with pytest.raises(ValueError, match="draws no small striped star"):
        realize(Query((ObjectQuery("star", size="small", texture="striped"),)), random.Random(0))
    with pytest.raises(ValueError, match="draws no striped ring"):
        realize(Query((ObjectQuery("ring", texture="striped"),)), random.Random(0))
    with pytest.raises(ValueError, match="same region"):
        Query((ObjectQuery("circle", region="top"), ObjectQuery("square", region="top")))
    with pytest.raises(ValueError, match="could describe the same objects"):
        Query((ObjectQuery("circle"), ObjectQuery("circle", colour="red")))
    with pytest.raises(ValueError, match="to itself"):
        Query((ObjectQuery("circle"), ObjectQuery("star")), relations=(RelationQuery(0, "above", 0),))
    with pytest.raises(ValueError, match="too alike"):
        realize(Query((ObjectQuery("star"),), background=BackgroundQuery("checkered", ("orange", "yellow"))),
                random.Random(0))
    # Two distinct groups of one shape are fine when an attribute both name tells them apart.
    Query((ObjectQuery("circle", colour="blue"), ObjectQuery("circle", colour="red")))
    assert vocab.textures_for("ring") == ("solid",)

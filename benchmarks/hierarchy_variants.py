"""Grouping variants tried for issue 14 (top level vs the naive baseline), on a finished labelled run.

    python benchmarks/hierarchy_variants.py RUN_DIR --field parent_label [--seeds 0,1,2,3,4] [--variants links10,centred]

Exploration, not the pipeline: exact 30 nearest neighbours per conversation (the pipeline searches among
the 20 nearest clusters), then for each seed our k-means into the run's base k and each variant's grouping
of the base clusters into the run's top-level count, against scikit-learn KMeans + Ward on its centroids.
Variants: Ward over [centroid, sqrt(neighbour-link shares)] with 5/10/30 neighbours, weights, diffusion
(P^2, P^3), symmetric or off-diagonal link profiles, smoothed centroids, spectral embeddings, greedy
modularity (networkx) on the link graph, size-weighted Ward, k-means refinement of the Ward cut,
PCA-whitened or centred centroids, consensus of coarse k-means runs, members' mean UMAP coordinates (10 dims),
Leiden communities of the conversations' 15-NN graph (needs `pip install igraph`). None beat `links10` (the pipeline's)
by a clear margin on both BANKING77 and CLINC150 (docs/evaluation.md, with the measured table).
"""
import numpy as np, scipy.sparse as sp
from sklearn.metrics import normalized_mutual_info_score as nmi
from scipy.cluster.hierarchy import fcluster, linkage
import argparse
from sklearn.cluster import KMeans
from convoscope.kmeans import kmeans
from convoscope.neighbours import cosine_knn
from convoscope.eval.common import gold_labels
from convoscope.store import RunStore
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run"); parser.add_argument("--field", required=True); parser.add_argument("--seeds", default="0,1,2,3,4")
parser.add_argument("--variants", help="comma-separated; default all")
args = parser.parse_args()
store = RunStore(args.run)
gold = gold_labels(store, args.field).astype(str)
EMB = np.asarray(store.read_array("embeddings", mmap=False), dtype=np.float32)
_levels = store.read_table("hierarchy", columns=["level"]).column("level").to_numpy()
k = int((_levels == _levels.max()).sum()); T = int((_levels == 0).sum())
NN = cosine_knn(EMB, EMB, 31)[0][:, 1:]  # exact neighbours, the first (itself) dropped

def links(l, m):
    k = l.max() + 1
    M = sp.csr_matrix((np.ones(len(l) * m), (np.repeat(l, m), l[NN[:, :m]].ravel())), shape=(k, k))
    M = sp.diags(1 / np.asarray(M.sum(1)).ravel()) @ M
    return M.toarray()

def ward(X, T, w=None):
    tree = linkage(X, method="ward")
    return np.unique(fcluster(tree, t=T, criterion="maxclust"), return_inverse=True)[1]

def spectral(W, dims):
    W = (W + W.T) / 2
    d = W.sum(1); Dm = 1 / np.sqrt(d)
    L = Dm[:, None] * W * Dm[None, :]
    vals, vecs = np.linalg.eigh(L)
    U = vecs[:, ::-1][:, :dims] * Dm[:, None]   # random-walk eigvecs
    return U, vals[::-1][:dims]

variants = {}
def V(f): variants[f.__name__] = f; return f
@V
def centroids(c, l): return ward(c, T)
@V
def links10(c, l): return ward(np.hstack([c, np.sqrt(links(l, 10))]), T)
@V
def links30(c, l): return ward(np.hstack([c, np.sqrt(links(l, 30))]), T)
@V
def links10_a2(c, l): return ward(np.hstack([c, np.sqrt(2) * np.sqrt(links(l, 10))]), T)
@V
def links10_diff2(c, l): P = links(l, 10); return ward(np.hstack([c, np.sqrt(P @ P)]), T)
@V
def links10_diff3(c, l): P = links(l, 10); return ward(np.hstack([c, np.sqrt(P @ P @ P)]), T)
@V
def links30_diff2(c, l): P = links(l, 30); return ward(np.hstack([c, np.sqrt(P @ P)]), T)
@V
def spec_T(c, l):
    U, _ = spectral(links(l, 10), T); return ward(U[:, 1:] / np.linalg.norm(U[:, 1:], axis=1, keepdims=True), T)
@V
def spec_2T_cat(c, l):
    U, vals = spectral(links(l, 10), 2 * T); U = U[:, 1:] * vals[1:]; U /= np.linalg.norm(U, axis=1, keepdims=True)
    return ward(np.hstack([c, U]), T)
@V
def diffmap_t3(c, l):
    U, vals = spectral(links(l, 10), 3 * T); U = U[:, 1:] * vals[1:] ** 3
    return ward(U, T)

MU = EMB.mean(0)
_ev, _evec = np.linalg.eigh(np.cov((EMB - MU).T))
_ev, _evec = _ev[::-1], _evec[:, ::-1]
def whiten(c, d, power=0.5):
    Z = (c - MU) @ _evec[:, :d] / _ev[:d] ** power
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)
@V
def links5(c, l): return ward(np.hstack([c, np.sqrt(links(l, 5))]), T)
@V
def links10_a05(c, l): return ward(np.hstack([c, np.sqrt(0.5) * np.sqrt(links(l, 10))]), T)
@V
def centred(c, l): z = c - MU; z /= np.linalg.norm(z, axis=1, keepdims=True); return ward(z, T)
@V
def centred_links(c, l): z = c - MU; z /= np.linalg.norm(z, axis=1, keepdims=True); return ward(np.hstack([z, np.sqrt(links(l, 10))]), T)
@V
def white64(c, l): return ward(whiten(c, 64), T)
@V
def white128(c, l): return ward(whiten(c, 128), T)
@V
def white128h(c, l): return ward(whiten(c, 128, 0.25), T)
@V
def white128_links(c, l): return ward(np.hstack([whiten(c, 128), np.sqrt(links(l, 10))]), T)
@V
def white64_links(c, l): return ward(np.hstack([whiten(c, 64), np.sqrt(links(l, 10))]), T)
@V
def white256h_links(c, l): return ward(np.hstack([whiten(c, 256, 0.25), np.sqrt(links(l, 10))]), T)
def wward(X, w, T):
    X = X.astype(np.float64).copy(); w = w.astype(np.float64).copy(); k = len(X)
    alive = np.ones(k, bool); lab = np.arange(k)
    sq = (X * X).sum(1); D = sq[:, None] + sq[None, :] - 2 * X @ X.T
    C = (w[:, None] * w[None, :] / (w[:, None] + w[None, :])) * D
    np.fill_diagonal(C, np.inf)
    for _ in range(k - T):
        i, j = np.unravel_index(np.argmin(C), C.shape)
        X[i] = (w[i] * X[i] + w[j] * X[j]) / (w[i] + w[j]); w[i] += w[j]; alive[j] = False; lab[lab == j] = i
        C[j, :] = np.inf; C[:, j] = np.inf
        d = ((X - X[i]) ** 2).sum(1); row = w * w[i] / (w + w[i]) * d
        row[~alive] = np.inf; row[i] = np.inf; C[i, :] = row; C[:, i] = row
    return np.unique(lab, return_inverse=True)[1]
@V
def sizeward_links(c, l): return wward(np.hstack([c, np.sqrt(links(l, 10))]), np.bincount(l), T)
@V
def sizeward(c, l): return wward(c, np.bincount(l), T)
@V
def sqrtsizeward_links(c, l): return wward(np.hstack([c, np.sqrt(links(l, 10))]), np.sqrt(np.bincount(l)), T)
import networkx as nx
def greedy(W, T, res=1.0):
    W = (W + W.T) / 2; np.fill_diagonal(W, 0)
    G = nx.from_numpy_array(W)
    comms = nx.community.greedy_modularity_communities(G, weight="weight", resolution=res, cutoff=T, best_n=T)
    lab = np.empty(len(W), int)
    for g, cm in enumerate(comms): lab[list(cm)] = g
    return lab
@V
def cnm_links(c, l): return greedy(links(l, 10) * np.bincount(l)[:, None], T)
@V
def cnm_links30(c, l): return greedy(links(l, 30) * np.bincount(l)[:, None], T)
@V
def cnm_links_shares(c, l): return greedy(links(l, 10), T)
def unit(z): return z / np.linalg.norm(z, axis=1, keepdims=True)
@V
def smooth1_links(c, l): P = links(l, 10); return ward(np.hstack([unit(P @ c), np.sqrt(P)]), T)
@V
def smooth2_links(c, l): P = links(l, 10); return ward(np.hstack([unit(P @ P @ c), np.sqrt(P)]), T)
@V
def sym_links(c, l):
    P = links(l, 10) * np.bincount(l)[:, None]; S = P + P.T; S /= S.sum(1, keepdims=True); return ward(np.hstack([c, np.sqrt(S)]), T)
@V
def links10_refine(c, l):
    X = np.hstack([c, np.sqrt(links(l, 10))]); g = ward(X, T); w = np.bincount(l).astype(float)
    for _ in range(20):
        M = np.vstack([np.average(X[g == t], axis=0, weights=w[g == t]) for t in range(T)])
        g2 = np.argmin(((X[:, None, :] - M[None]) ** 2).sum(-1), axis=1)
        if (g2 == g).all() or len(np.unique(g2)) < T: break
        g = g2
    return g
from sklearn.cluster import KMeans as _KM
_COARSE = {}
def coarse(l, R, kk):
    key = (R, kk)
    if key not in _COARSE:
        _COARSE[key] = [_KM(n_clusters=kk, random_state=100 + r, n_init=1).fit_predict(EMB) for r in range(R)]
    k = l.max() + 1; feats = []
    for g in _COARSE[key]:
        M = np.zeros((k, kk)); np.add.at(M, (l, g), 1); M /= M.sum(1, keepdims=True); feats.append(np.sqrt(M / R))
    return np.hstack(feats)
@V
def links_coarse5T(c, l): return ward(np.hstack([c, np.sqrt(links(l, 10)), coarse(l, 5, T)]), T)
@V
def links_coarse5_2T(c, l): return ward(np.hstack([c, np.sqrt(links(l, 10)), coarse(l, 5, 2 * T)]), T)
@V
def c_coarse5_2T(c, l): return ward(np.hstack([c, coarse(l, 5, 2 * T)]), T)
def offdiag(P):
    Q = P.copy(); np.fill_diagonal(Q, 0); s = Q.sum(1, keepdims=True); return np.where(s > 0, Q / np.maximum(s, 1e-12), 0)
@V
def c_off(c, l): return ward(np.hstack([c, np.sqrt(offdiag(links(l, 10)))]), T)
@V
def c_links_off(c, l): P = links(l, 10); return ward(np.hstack([c, np.sqrt(P), np.sqrt(offdiag(P))]), T)
@V
def c_links_off30(c, l): P = links(l, 10); return ward(np.hstack([c, np.sqrt(P), np.sqrt(offdiag(links(l, 30)))]), T)
@V
def c_links_offsym(c, l):
    P = links(l, 10); Q = offdiag(P); w = np.bincount(l)[:, None]; S = Q * w; S = S + S.T; S /= np.maximum(S.sum(1, keepdims=True), 1e-12)
    return ward(np.hstack([c, np.sqrt(P), np.sqrt(S)]), T)
_UMAP = {}
def umap_means(l, d):
    # UMAP (cosine, 15 neighbours, min_dist 0) of every conversation, fitted once per run, averaged per base cluster
    if d not in _UMAP:
        import umap
        _UMAP[d] = umap.UMAP(n_components=d, n_neighbors=15, min_dist=0.0, metric="cosine", random_state=0).fit_transform(EMB)
    Z = _UMAP[d]; S = np.zeros((l.max() + 1, d)); np.add.at(S, l, Z); M = S / np.bincount(l)[:, None]
    return M / np.sqrt(((M[l] - M[l].mean(0)) ** 2).sum(1).mean())  # unit spread, comparable to the unit centroids
@V
def umap10(c, l): return ward(umap_means(l, 10), T)
@V
def umap10_c(c, l): return ward(np.hstack([c, 0.5 * umap_means(l, 10)]), T)
@V
def umap10_links(c, l): return ward(np.hstack([0.5 * umap_means(l, 10), np.sqrt(links(l, 10))]), T)
def leiden_T(edges, n, T, weights=None):
    # Leiden (modularity) with the resolution bisected until it gives T communities (or the nearest count)
    import igraph  # not a dependency: pip install igraph
    g = igraph.Graph(n=n, edges=edges); best = None; lo, hi = 1e-4, 10.0
    for _ in range(30):
        res = np.sqrt(lo * hi)
        m = np.array(g.community_leiden(objective_function="modularity", resolution=res, weights=weights, n_iterations=-1).membership)
        if best is None or abs(m.max() + 1 - T) < abs(best.max() + 1 - T): best = m
        if m.max() + 1 == T: break
        lo, hi = (res, hi) if m.max() + 1 < T else (lo, res)
    return best
@V
def leiden_conv15_vote(c, l):
    # communities of the conversations' 15-NN graph; each base cluster joins its members' most common one
    import random; random.seed(0)
    n = len(EMB); A = sp.csr_matrix((np.ones(n * 15), (np.repeat(np.arange(n), 15), NN[:, :15].ravel())), shape=(n, n))
    A = A.maximum(A.T).tocoo(); keep = A.row < A.col
    comm = leiden_T(list(zip(A.row[keep], A.col[keep])), n, T)
    M = np.zeros((l.max() + 1, comm.max() + 1)); np.add.at(M, (l, comm), 1); return M.argmax(1)
pick = args.variants.split(",") if args.variants else list(variants)
res = {v: [] for v in pick + ["baseline"]}
for seed in (int(s) for s in args.seeds.split(",")):
    l, c = kmeans(EMB, k, seed)
    c = c.astype(np.float64)
    for v in pick:
        res[v].append(nmi(gold, variants[v](c, l)[l]))
    plain = KMeans(n_clusters=k, random_state=seed).fit(EMB)
    res["baseline"].append(nmi(gold, ward(plain.cluster_centers_.astype(np.float64), T)[plain.labels_]))
    print(f"seed {seed} done", flush=True)
b = np.mean(res["baseline"])
print(f"{args.run}: base k {k}, top {T}, NMI vs {args.field}: mean, sd, minus the baseline's mean, per seed")
for v, s in res.items():
    print(f"  {v:20s} {np.mean(s):.3f} sd {np.std(s):.3f} {np.mean(s) - b:+.3f}  " + " ".join(f"{x:.3f}" for x in s))

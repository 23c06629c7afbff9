"""The derived ([D]) statements of docs/THEORY.md, listed explicitly by reading the file.

Section 3 is labelled "[D]" as a whole ("Derived explicit bounds [D]"), so every numbered claim in §3 is listed,
except the cited inputs that are not derived here (Tropp's matrix Bernstein inequality in §3.2, the Bai–Yin limit
and Gaussian concentration of the full matrix in §3.10/§3.12, and the convex-order domination of sampling without
replacement in §3.11: those are quoted theorems; only the algebra built on them is checked). Outside §3, the
[D]-labelled items are: the pooling facts (§1.7), the containment facts (§4.1), the per-entry tolerance (§4.2
step 6), error composition (§4.4) and the counting lower bound (§4.5).

``python -m proofs_check`` reports every statement below; one without a check is flagged MISSING (a failure).
When THEORY.md gains a [D] statement, add it here (``tests/test_proofs.py`` guards the count of [D] labels).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DStatement:
    id: str
    ref: str
    text: str


D_STATEMENTS: tuple[DStatement, ...] = (
    # §1.7 pooling [D]
    DStatement("pool-max", "§1.7", "non-overlapping max pooling is 1-Lipschitz in l2 and pool(0) = 0"),
    DStatement("pool-avg", "§1.7", "non-overlapping average pooling over w entries has L = 1/sqrt(w)"),
    DStatement("pool-overlap", "§1.7", "each input in <= r_p windows: L <= sqrt(r_p) (max), sqrt(r_p/w) (average)"),
    DStatement("flatten", "§1.7", "flatten is an isometry"),
    # §3 preamble and §3.1
    DStatement("beta-def", "§3", "beta(s2,R,lam) = R lam/3 + sqrt((R lam/3)^2 + 2 s2 lam) is positive and finite"),
    DStatement("lemmaA-general", "§3.1", "Lemma A general form (any sigma(0)): err <= sum_i L_i||E_i|| b_{i-1} prod_{j>i} L_j||What_j||"),
    DStatement("lemmaA-fwd", "§3.1", "(A-fwd): err <= Lip sum_i ||E_i|| prod_{j<i}||W_j|| prod_{j>i}||What_j||"),
    DStatement("lemmaA-bwd", "§3.1", "(A-bwd): err <= Lip sum_i ||E_i|| prod_{j<i}||What_j|| prod_{j>i}||W_j||"),
    DStatement("corA1", "§3.1", "Corollary A1: prod(1+r_j) - 1 = sum_i r_i prod_{j>i}(1+r_j), every depth, both orders"),
    DStatement("A-star", "§3.1", "(A*): err <= Lip prod(B)(prod(1+eta_i/B_i) - 1) given ||W||<=B, ||E||<=eta"),
    DStatement("norm-increase", "§3.1", "zeroing entries can increase the spectral norm: sqrt(2) vs (1+sqrt(5))/2"),
    # §3.2
    DStatement("bernstein-inverse", "§3.2", "beta(v,R,lam') is the positive root of t^2/2 = lam'(v + R t/3), so tail <= delta'"),
    DStatement("bernstein-entrywise", "§3.2", "entry-wise instance: v = max(max row, max col) of sum E x^2; i.i.d.: max(d1,d2) nu"),
    # §3.3
    DStatement("moments-uniform", "§3.3", "second moments of w, w1{|w|<qa}, wb, w(b-p)/(1-p); means 0; P(|w|<qa)=q; E w^4 1{|w|<tau} = tau^5/(5a)"),
    DStatement("ranges-uniform", "§3.3", "range bounds R: a, qa, a, a max(1, p/(1-p))"),
    # §3.4
    DStatement("thm-RM-RR", "§3.4", "Theorems RM, RR, RR': B_i, eta_i formulas and eps_bound = Lip prod B (prod(1+eta/B) - 1) w.p. >= 1-delta"),
    DStatement("RRprime-ge-RR", "§3.4", "RR' >= RR (rescaling does not help the worst case)"),
    DStatement("RR-mask", "§3.4", "RR-mask: for a mask independent of W, v = D_i a_i^2/3 with D_i the max pruned per line"),
    # §3.5 - §3.7
    DStatement("lemmaC", "§3.5", "Lemma C: ||T_W|| <= sqrt(r)||mat(W)||, T_W - T_What = T_{W-What}; each input in <= r patches"),
    DStatement("thm-RC", "§3.6", "Theorem RC: conv layers use sqrt(r_i) x (B_i, eta_i) of mat(W_i); Lemma A needs only operator norms"),
    DStatement("first-order", "§3.7", "prod(1+r_i) - 1 = sum r_i + O(r^2) (and >= sum r_i for r >= 0)"),
    # §3.8
    DStatement("union-bound", "§3.8", "event set has l + l_p events; equal split delta/|E| sums to delta (delta/(2l) when all pruned)"),
    # §3.9
    DStatement("inverse-monotone", "§3.9", "eta_i strictly increasing in q_i (RM) and p_i (RR, RR'); RR jump eta(0+) = 2 a lam/3; beta increasing in s2, R, lam"),
    DStatement("inverse-equal-share", "§3.9", "equal share: rho = (1+eps/(Lip prod B))^(1/l_p) - 1; RR closed form; magnitude cubic has a unique positive root"),
    # §3.10
    DStatement("scaling-ratios", "§3.10", "Bernstein ratios eta/B -> q^(3/2), p^(1/2), (p/(1-p))^(1/2) as a -> 0 (m a^2 fixed)"),
    DStatement("scaling-norms", "§3.10", "||W_i|| -> a(sqrt(d_i)+sqrt(d_{i-1}))/sqrt(3); ||E|| ratios match q^(3/2), p^(1/2) at width ~500"),
    DStatement("scaling-laws", "§3.10", "equal error q = p^(1/3); sublinear rates q ~ d^(-2a/3), p ~ d^(-2a); B ~ a sqrt(2 m lam/3)"),
    # §3.11
    DStatement("cert-D", "§3.11", "Cert-D = Lip min(A-fwd, A-bwd) with exact norms is an upper bound on err"),
    DStatement("cert-R-bern", "§3.11", "Cert-R, R-Bern: What = (1-p)W - (E - pW); variance w^2 p(1-p), range |w| max(p,1-p); ||E|| <= p w + t"),
    DStatement("cert-R-rescaled", "§3.11", "Cert-R, rescaled: E = W(P-p)/(1-p), variance w^2 p/(1-p), range |w| max(p,1-p)/(1-p)"),
    DStatement("cert-R-exact", "§3.11", "Cert-R, R-exact surrogate: ||Z|| <= mu + w/N, v <= p rho^2"),
    # §3.12
    DStatement("gauss-magnitude", "§3.12", "Gaussian: q = 2Phi(c)-1, E e^2 = s^2 g(c), g(c) = 2Phi(c)-1-2c phi(c) ~ (pi/6) q^3"),
    DStatement("gauss-truncation", "§3.12", "1-Phi(u) <= e^(-u^2/2)/2; u = sqrt(2 ln(N/delta'')) gives P(max|w| > s u) <= delta''; truncated variance <= s^2"),
    # §4
    DStatement("contain-product", "§4.1", "uv (u,v i.i.d. U[-1,1]) has density -ln|z|/2 >= ln2/2 on [-1/2,1/2]"),
    DStatement("contain-gauss", "§4.1", "N(0,1) contains 2 phi(1) U[-1,1], 2 phi(1) ~ 0.484"),
    DStatement("per-entry-tolerance", "§4.2", "eps'_i = eps_i/sqrt(c_i d_i d_{i-1}) gives ||What_i - W_i||_F <= eps_i; ||[s(x); s(-x)]|| = ||x||"),
    DStatement("composition", "§4.4", "e_l <= prod(1+eps_i) - 1; (1+eps/(2l))^l - 1 <= e^(eps/2) - 1 <= eps for eps <= 1"),
    # §8 networks as graphs [D]
    DStatement("graph-reproduce", "§8", "the traced graph reproduces the model's forward on seeded inputs, else refusal"),
    DStatement("graph-affine", "§8.1", "S2: W h + c - (What hh + c) = W(h-hh) + E hh = What(h-hh) + E h; bias cancels"),
    DStatement("graph-act", "§8.1", "S3: ||s(h)-s(hh)|| <= L||h-hh||, ||s(h)|| <= L||h|| + |s(0)| sqrt(dim)"),
    DStatement("graph-schur", "§8.1", "S4: avg-type pools: ||A|| <= sqrt(||A1||_inf ||A^T1||_inf) (A >= 0)"),
    DStatement("graph-maxpool", "§8.1", "S5: max pools: Lipschitz sqrt(c_max), c_max = max windows containing an input"),
    DStatement("graph-bn", "§8.1", "S6: eval BatchNorm folding W' = diag(s)W, c' = s(c-mu)+beta; masks commute"),
    DStatement("graph-add", "§8.1", "S7: additions add bounds (|a| for u + a v), gains scale by |c|, reshapes isometric"),
    DStatement("graph-lemmaA", "§8.2", "Lemma A on graphs: the S1-S7 recursion bounds ||h_v||, ||hhat_v||, ||h_v - hhat_v||"),
    DStatement("graph-nodewise-min", "§8.2", "node-wise min of the two S2 forms is <= min(D_f, D_b)"),
    DStatement("graph-chain", "§8.3", "on chains D_f, D_b are §3.1's A-fwd, A-bwd (general form with biases)"),
    DStatement("counting-lower", "§4.5", "counting: N >= d^2 log2(1/(4 eps)); depth 2: w >= (d/2) log2(1/(4 eps))"),
    # §10 calibrated, relative and task-level statements [D]
    # issue 20 / 22 item 3 (H7)
    DStatement("law-origin", "§3.0", "law statements refuse a model-derived spec unless assume_law=True (then repeated)"),
    DStatement("budget-rules", "§3.9", "Statement 3.9b: exact-k counts by the exact-k bound, threshold t_i / Bernoulli p_i by theirs"),
    DStatement("exact-k-product", "§9.8", "S9.8b: S9.8 for exact-k magnitude via the order statistics, the count pmf and monotonicity in t"),
    DStatement("rescaled-product", "§9.8", "S9.8c: rescaled random as prod(Y+Z) - prod Y - kappa prod Y; signs dropped; Minkowski"),
    DStatement("second-moment", "§9.11", "S9.11: E||D||_F^2 = c(prod alpha - 2 prod beta + prod gamma) for linear dense/conv nets; Markov"),
    DStatement("fourth-moment", "§9.12", "S9.12: exact E||D||_F^4 for linear dense chains (threshold/Bernoulli) by the index-pattern recursion; Markov"),
    DStatement("conv-fourth-moment", "§9.14", "S9.14: exact E||D||_F^4 for small conv nets (weight sharing) by the pairing expansion over kernel entries; Cantelli"),
    DStatement("trace-moment", "§9.13", "S9.13: exact E tr((DD^T)^p), p = 2, 3, for linear dense chains by the 2p-chain pattern recursion; ||D||^(2p) <= tr; Markov"),
    DStatement("lemma-moment", "§9.15", "S9.15: Lemma A in one event: exact layer trace moments E tr((XX^T)^p), p <= 6, Minkowski over independent layers; Markov"),
    DStatement("rate-lower", "§9.10", "S9.10: max row/column norm lower bound; rates q^(3/2) magnitude, p^(1/2) random"),
    DStatement("calib-multirun", "§10.1", "Statement 10.1c: R runs at rank k(T, delta, gamma/R), min over runs valid"),
    DStatement("median-vacuity", "§10.3", "Statement 10.3b': Y_(j) <= median w.c. 1-gamma; eps < L is a median statement"),
    DStatement("calib-overview", "§10", "§10 statements are labelled: calibrated (simulation) vs analytic; relative eps only chooses eps"),
    DStatement("calib-order-stat", "§10.1", "Statement 10.1: rank k = min{k : binom.cdf(k-1,T,1-delta) >= 1-gamma}: P(err > U_(k)) <= delta w.c. 1-gamma"),
    DStatement("calib-grid-union", "§10.2", "Statement 10.2: rank at gamma/|grid| holds for every grid point; a searched grid point is covered"),
    DStatement("rel-scale", "§10.3", "Statement 10.3: ||F(x)|| <= b_l (activation-norm recursion); calibrated Lip prod||W_i|| bound for the law"),
    DStatement("graph-scale", "§10.3", "Statement 10.3c: sup||F|| <= Cert-D(F, F_0) + ||F_0(0)|| for traced graphs whose input feeds only weight layers"),
    DStatement("margin-sqrt2", "§10.4", "Statement 10.4a: prediction unchanged for all ||d|| <= e iff margin > sqrt(2) e (exact constant)"),
    DStatement("ball-scaling", "§10.4", "Statement 10.4b: G(u) = F(su) via s W_1; homogeneous bias-free: err(x) <= (||x||/s) e_G"),
    DStatement("acc-drop-eps", "§10.4", "Statement 10.4c: CA(e) >= acc - A iff e < t_(m)"),
    DStatement("opt-inversion", "§10.5", "Statement 10.5: log-share form of the bound; split over the pruned set only; table running max is sound"),
    # §11 certified norms and budgets at scale
    DStatement("scale-certified-only", "§11", "only certified norms (11.1, 11.2, Lemma C) enter a reported certificate or budget"),
    DStatement("norm-scaled-gram", "§11.1", "||M|| <= 2^e sqrt(lambda_hat + (k+m+n+10) eps ||M'||_F^2 + tiny) (1 + 1e-9), M' = M / 2^e"),
    DStatement("norm-conv-rfft", "§11.2", "zero-padded conv (stride, dilation, groups, 1-D) <= max over the rfft half of the periodic blocks' norms"),
    DStatement("budget-certified-sound", "§11.3", "the certified budget's counts have certified Cert-D (certify_graph) <= eps"),
    DStatement("norm-cholesky-hint", "§11.5", "Cholesky of fl(mu I - G) completes => lambda_max(G) <= mu + gamma_{4(d+1)} ||R||_F^2 + u max|A_ii|"),
    DStatement("norm-cholesky-search", "§11.6", "max over blocks of (11.1 eigenvalue bound or 11.5 Cholesky bound at a common guess) bounds max_b lambda_max(G_b); herk Gram of conj(F_b)"),
    DStatement("budget-auto-sound", "§11.7", "the auto-rule budget's counts have min(Cert-D, §12 certificate) <= eps, recomputed from the exact-k masks, and >= a PGD lower bound"),
    DStatement("budget-uniform-reference-tf", "§11.8", "the optimal tight budget's uniform reference counts are certified <= eps by the reported value: the named §12 method recomputed from exact-k masks equals it (search's own value), or the auto rule"),
    DStatement("budget-shapes", "§11.4", "||E|| >= max(||E||_F/sqrt(min dim), row and column norms); |u^T W v| <= ||W||"),
    # §12 tighter certificates
    DStatement("tight-min", "§12", "every §12 bound is an upper bound on sup_R ||F - F_hat||; the minimum of valid bounds is valid"),
    DStatement("tight-lowering", "§12.1", "affine runs composed exactly; residual DAG as a chain with carried identity coordinates"),
    DStatement("tight-lemmaA-composed", "§12.1", "Statement 12.1: Lemma A on composed stages with the bias-difference term"),
    DStatement("tight-pair", "§12.2", "Statement 12.2: sup_{0<=D<=I} ||A D B||^2 <= t^2 lambda_max(B^T (2tI - A^T A)^{-1} B)"),
    DStatement("tight-unroll", "§12.3", "Statement 12.3: F - F_hat = sum_i M_L S ... S_i (E_i shat + db_i), slopes in [0,1]; grouping bound"),
    DStatement("tight-mixed", "§12.3", "Statement 12.8: sum_i min(Pi_i V_i, pi_i beta_{i-1} + Pi_i db_i)"),
    DStatement("tight-anchored", "§12.3", "Statement 12.9: v_i = w_i + E_i Shat Mhat ... (x - x0); chain bounds of both parts"),
    DStatement("tight-pair-thin", "§12.2", "Statement 12.2b: t^2 B^T (2tI - A^T A)^{-1} B <= (t/2)(B^T B + W^T diag(1/(2t - lam')) W), W = U^T A B, A A^T <= U diag(lam') U^T"),
    DStatement("tight-joint-thin", "§12.12", "Statement 12.61: the joint step from G = C^T C with fewer rows than relaxed coordinates by the r x r matrix C_R C_R^T (push-through)"),
    DStatement("tight-chain", "§12.2", "Statement 12.10: S-procedure chain recursion G_{k+1} = t^2 X^T (2tI - G_k)^{-1} X"),
    DStatement("tight-maxpool", "§12.7", "Statement 12.13: max over a window = ReLU tree b + ReLU(a - b); exact chain lowering"),
    DStatement("tight-maxpool-block", "§12.7", "Statement 12.17: a max-pool block is one sqrt(c_max)-Lipschitz step of composed Lemma A"),
    DStatement("tight-scaling", "§12.8", "Statement 12.14: power-of-two diagonal rescaling of a ReLU chain scales F - F_hat by 2^-e"),
    DStatement("tight-diff-exact", "§12.8", "Statement 12.15: W v + c - (What vh + ch) = What d + (W - What) v + (c - ch)"),
    DStatement("tight-what-differs", "§12.8", "Statement 12.16: Cert-D only for weight-only differences; ties by storage"),
    DStatement("cnn-operator-backsub", "§12.9", "Statement 12.30: sparse / identity operators in the back-substitution: same sums, another order, within FP_REL"),
    DStatement("cnn-lower-slope", "§12.9", "Statement 12.31: ReLU(z) >= a z for every a in [0, 1]; tie-tolerant adaptive slope"),
    DStatement("cnn-mixed-schedule", "§12.9", "Statement 12.32: beta by propagation only before stages with an error; hat-only propagator"),
    DStatement("cnn-mixed-cheap-pairs", "§12.9", "Statement 12.33: mixed bound with any valid pair bounds (none / scalar / full), eps_full <= eps_scalar <= eps_none"),
    DStatement("mixed-anchored-beta-tc", "§12.10", "Statement 12.40: sup ||shat_i|| <= ||shat_i(x0)|| + g(Mhat_i, ..., Mhat_1) rho"),
    DStatement("mixed-pool-segment-tc", "§12.10", "Statement 12.41: S-procedure segment through a max-pool block: G -> sum_j t_j Q_j for diagonal T >= G"),
    DStatement("tg-mixed-noprop", "§12.11", "Statement 12.51: the mixed bound with V_i = inf (i > 1) and beta by the norm recursion is valid and >= the propagated variant term by term"),
    DStatement("tg-conv-identity", "§12.11", "Statement 12.52: a convolution of a fresh state block's identity rows is the kernel placed by unfold of an index image"),
    DStatement("joint-identity", "§12.12", "Statement 12.60 (a): the coupled chain u_i = D_i X_i u_(i-1) with slopes in [0, 1] (F_hat's pattern, the difference quotient, 1 on the constant)"),
    DStatement("joint-step", "§12.12", "Statement 12.60 (b): the S-procedure step with diagonal multipliers on the slope coordinates and none on the constant"),
    DStatement("joint-end-to-end", "§12.12", "Statement 12.62: the joint bound at multipliers proposed end to end is an upper bound wherever every step's 2T - G_RR - slack I factorises; the minimum with the greedy value"),
    DStatement("joint-relu-step", "§12.12", "Statement 12.63: the joint step with the ReLU's linear constraints (shat >= 0, shat >= zhat, s >= 0, s >= z) times the constant, multipliers nu >= 0, on indefinite forms"),
    DStatement("relu-maxpool-commute", "§12.12", "Statement 12.64: max_i sigma(z_i) = sigma(max_i z_i) for nondecreasing sigma (bitwise for ReLU): ReLU -> max pooling may be rewritten max pooling -> ReLU without changing F or F_hat"),
    DStatement("joint-ground-truth", "§12.12", "Statement 12.60 (c): the trust-region bound at the input makes the joint recursion an upper bound on sup ||F - F_hat||"),
    DStatement("tg-stage-norm-sparse", "§12.11", "Statement 12.50: stage norm by row/column components (max over blocks) and sparse Gram + Cholesky at a Lanczos guess"),
    DStatement("tight-delta-relax", "§12.4", "Statement 12.4: linear relaxation of ReLU(zhat + dz) - ReLU(zhat) in dz"),
    DStatement("tight-crown-coupled", "§12.4", "Statement 12.5: coupled CROWN on (delta, shat) is an upper bound on the region"),
    DStatement("tight-l2", "§12.4", "Statement 12.6: l2 from coordinate bounds; trust-region Lagrangian dual"),
    DStatement("tight-stability", "§12.5", "Statement 12.7: positive margins of F and F_hat on R fix both predictions"),
    DStatement("tight-sdp-constraints", "§12.6", "Statement 12.11: ReLU, triangle, cross-network, ball, box and norm constraints hold on R"),
    DStatement("tight-sdp-dual", "§12.6", "Statement 12.12: Lagrangian certificate from any multipliers (eigenvalue and strongly concave forms)"),
    DStatement("tight-sdp-fo", "§12.6", "Statement 12.12b (§12.6b): first-order dual solve; the certified float64 step bounds the sup at any multipliers"),
    # §9 sharper a-priori bounds [D] (issue 11 part A; proofs_check/checks_sharp.py)
    DStatement("sharp-setting", "§9", "every §9 statement is a deterministic threshold x(shapes, fractions, delta') with P(||X|| > x) <= delta'"),
    DStatement("sharp-S9.1", "§9.1", "S9.1 moment comparison: P(||X|| >= x) <= T_p/x^(2p), T_p from Gordon, Rayleigh tail, Hoelder, chi2"),
    DStatement("sharp-tableM", "§9.1", "table M: dominating variances sigma_p^2 = a^2 max_(k<=p) rho_k^(1/k) of every entry law"),
    DStatement("sharp-S9.2", "§9.2", "S9.2 Gaussian: ||W|| <= s(sqrt(d1) + sqrt(d2) + sqrt(2 ln(1/delta)))"),
    DStatement("sharp-S9.3", "§9.3", "S9.3 uniform as an a sqrt(2/pi)-Lipschitz image of a Gaussian"),
    DStatement("sharp-S9.4", "§9.4", "S9.4 Schur test with line sums (count, conditional, Bernstein forms), monotone in the support"),
    DStatement("sharp-S9.5", "§9.5", "S9.5 masks independent of W: Jensen; exact-k = Bernoulli given its count"),
    DStatement("sharp-S9.6", "§9.6", "S9.6 exact-k magnitude: order-statistic bracket, shell, threshold given its count"),
    DStatement("sharp-S9.7", "§9.7", "S9.7 minimum of deterministic thresholds at the same failure probability"),
    DStatement("sharp-S9.8", "§9.8", "S9.8 product moment recursion for linear nets (disjoint supports, Chevet, Minkowski)"),
    # §17 statistical verdicts of the figures [D] (issue 21 item 3; proofs_check/checks_figure_verdicts.py)
    DStatement("verdict-dispersion", "§17.1", "Statement 17.1: D = 2 x k Pearson chi-square; exact-k E D = (k-1) N/(N-1); cut-off prob <= k p^n"),
    DStatement("verdict-paired", "§17.2", "Statement 17.2: the paired t-interval excludes 0 iff the paired t-test rejects"),
    DStatement("verdict-slope", "§17.3", "Statement 17.3: eps ~ d^-(alpha+beta) locally gives width slope -1/(alpha+beta)"),
)

D_IDS = tuple(s.id for s in D_STATEMENTS)
assert len(set(D_IDS)) == len(D_IDS)

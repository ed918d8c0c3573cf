"""sgdsde.nn.classification_problem and sgdsde.nn.metrics: training with sgdsde.sgd
equals a plain optax loop with the same data order; per-example losses and gradients
are consistent with the full loss; frozen batch statistics; metrics and observers;
bad input."""

import flax.linen as linen
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sgdsde as sd
import sgdsde.nn as snn
from sgdsde.nn import data, metrics
from sgdsde.runner import replica_keys
from sgdsde.sampling import make_sampler

EPS32 = float(np.finfo(np.float32).eps)


# checks in NumPy: eager jnp ops on many small leaves would each compile a program
def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _max_abs(tree):
    return max(float(np.max(np.abs(leaf))) for leaf in jax.tree_util.tree_leaves(_np(tree)))


def _max_diff(a, b):
    return _max_abs(jax.tree_util.tree_map(lambda x, y: x - y, _np(a), _np(b)))


# ------------------------------------------------------- sgdsde.sgd versus optax
def test_sgd_epoch_matches_optax_loop_with_the_same_data_order():
    """A 16-32-4 MLP trained by sgdsde.sgd("epoch") and by a plain optax loop
    (optax.sgd after add_decayed_weights(2τ), the gradient of τ‖θ‖²) fed the same
    minibatches: the library's epoch sampler, driven by the keys sgdsde.run uses
    (replica r, step k: fold_in(fold_in(key, r), k)), gives the order."""
    n, s, steps, eta, tau = 256, 32, 160, 0.2, 1e-3
    full = data.gaussian_mixture(n + 256, 16, 4, key=jax.random.key(0), separation=2.5)
    splits = data.split(full, key=jax.random.key(1), validation=0, test=256)
    model = snn.MLP(4, hidden=(32,))
    problem = snn.classification_problem(model, splits.train, tau)
    params0 = snn.init_params(problem, jax.random.key(3))
    key = jax.random.key(7)
    observers = [
        sd.observers.endpoint(),
        metrics.accuracy_curve("train", 40),
        metrics.evaluation_curve(splits.test, 40),
    ]
    result = sd.run(key, sd.sgd("epoch"), problem, sd.Hyper(eta, s), params0, steps, observers=observers)
    trained = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[0]), result["endpoint"])

    # the same batches, then a plain optax loop on batched model.apply
    sampler, k0 = make_sampler("epoch"), replica_keys(key, 1)[0]

    def draw(state, k):
        indices, state = sampler.draw(jax.random.fold_in(k0, k), state, n, jnp.int32(s), s)
        return state, indices[:s]

    _, batches = jax.lax.scan(draw, sampler.init(n), jnp.arange(steps, dtype=jnp.int32))
    optimizer = optax.chain(optax.add_decayed_weights(2 * tau), optax.sgd(eta))
    x, y = jnp.asarray(splits.train.x), jnp.asarray(splits.train.y)

    def step(carry, indices):
        params, opt_state = carry

        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x[indices]), y[indices]).mean()

        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    train_loop = jax.jit(lambda p, b: jax.lax.scan(step, (p, optimizer.init(p)), b)[0][0])
    reference = train_loop(params0, batches)

    # float32: the two loops sum the same terms in different orders (a 1/S-weighted sum
    # of per-example gradients versus a mean of a batched pass), a few ulps per step;
    # accumulated over T steps the difference is at most ~T·ε·max|θ| = 2e-5 here
    # (measured: 2e-7, a few ulps — rounding does not grow in this run).
    tol = steps * EPS32 * _max_abs(reference)
    assert _max_diff(trained, reference) <= tol

    on_test = jax.jit(lambda p: metrics.evaluate(model, p, splits.test))
    on_train = jax.jit(lambda p: metrics.accuracy(problem, p, splits.train.x, splits.train.y))
    final, initial, optax_final = (_np(on_test(p)) for p in (trained, params0, reference))
    assert final["accuracy"] == optax_final["accuracy"]  # same predictions on all 256 test examples
    assert initial["accuracy"] < 0.5 and final["accuracy"] >= 0.85  # it learned (measured 0.25 → 0.91)

    # the observers: records at t = 0, 40, …, 160, equal to the metrics of the endpoints
    curve, evaluation = result["train_accuracy"], result["test_metrics"]
    np.testing.assert_array_equal(curve["times"], [0, 40, 80, 120, 160])
    assert curve["values"].shape == (5, 1) and evaluation["values"]["loss"].shape == (5, 1)
    assert curve["values"][0, 0] == on_train(params0) and curve["values"][-1, 0] == on_train(trained)
    assert evaluation["values"]["accuracy"][-1, 0] == final["accuracy"]
    # the same 256-term mean computed in a different program: 256·ε relative
    np.testing.assert_allclose(evaluation["values"]["loss"][[0, -1], 0], [initial["loss"], final["loss"]],
                               rtol=256 * EPS32)
    assert final["loss"] < initial["loss"]


# ------------------------------------------------ per-example consistency (CNN)
def test_per_example_losses_and_gradients_are_consistent_with_the_full_loss():
    """For a CNN on 48 images with weight decay τ: L = mean l_i + τ‖θ‖²,
    ∇L = mean ∇l_i + 2τθ, and a minibatch's gradient (weights 1/S, a repeated index
    counted twice) is the mean of its examples' gradients plus 2τθ. The per-example
    loss equals the cross-entropy of the batched forward pass."""
    tau, n = 1e-2, 48
    dataset = data.subset(data.synthetic_digits(key=jax.random.key(0)), n)
    model = snn.CNN(10, channels=(4, 8), dense=(16,))
    problem = snn.classification_problem(model, dataset, tau)
    params = snn.init_params(problem, jax.random.key(1))
    batch = jnp.array([3, 17, 17, 40, 5])  # with a repeat
    weights = jnp.full(5, 0.2)

    @jax.jit
    def facts(params):
        grads = problem.per_example_grads(params)
        return {
            "loss": problem.loss(params),
            "losses": problem.per_example_losses(params),
            "batched": optax.softmax_cross_entropy_with_integer_labels(
                model.apply(params, problem.data["x"]), problem.data["y"]),
            "grad": problem.grad(params),
            "mean_grad": jax.tree_util.tree_map(lambda g: jnp.mean(g, 0), grads),
            "minibatch": problem.minibatch_grad(params, batch, weights),
            "batch_mean": jax.tree_util.tree_map(lambda g: jnp.mean(g[batch], 0), grads),
        }

    f, params = _np(facts(params)), _np(params)
    decay = jax.tree_util.tree_map(lambda p: 2 * tau * p, params)
    norm2 = sum(float(np.sum(p.astype(np.float64) ** 2)) for p in jax.tree_util.tree_leaves(params["params"]))
    # float32 sums of N terms: error ≤ N·ε·(largest term)
    losses = np.asarray(f["losses"])
    np.testing.assert_allclose(f["loss"], losses.mean() + tau * norm2, rtol=n * EPS32)
    np.testing.assert_allclose(f["losses"], f["batched"], rtol=n * EPS32, atol=n * EPS32)
    grad_scale = _max_abs(f["grad"]) + _max_abs(f["mean_grad"])
    expected = jax.tree_util.tree_map(np.add, f["mean_grad"], decay)
    assert _max_diff(f["grad"], expected) <= n * EPS32 * grad_scale
    expected = jax.tree_util.tree_map(np.add, f["batch_mean"], decay)
    assert _max_diff(f["minibatch"], expected) <= n * EPS32 * grad_scale
    assert problem.info["num_parameters"] == snn.num_parameters(params)


# ----------------------------------------------------- frozen batch statistics
@pytest.fixture(scope="module")
def bn_problem():
    dataset = data.gaussian_mixture(64, 5, 3, key=jax.random.key(2))
    problem = snn.classification_problem(snn.MLP(3, hidden=(8,), batch_norm=True), dataset, 1e-3)
    return problem, dataset


def test_batch_norm_statistics_are_the_training_sets_and_frozen(bn_problem):
    problem, dataset = bn_problem
    model = problem.info["model"]

    @jax.jit
    def facts(key):
        params = snn.init_params(problem, key)
        logits, _ = model.apply(params, problem.data["x"], use_batch_statistics=True, mutable=["batch_stats"])
        return {
            "params": params,
            # training-mode batch norm on the full data set (the batch's own statistics)
            "full_batch": optax.softmax_cross_entropy_with_integer_labels(logits, problem.data["y"]).mean(),
            "data_loss": problem.data_loss(params),
            "grad": problem.grad(params),
        }

    f = _np(facts(jax.random.key(4)))
    params = f["params"]
    # the stored statistics are the mean and (biased) variance over the N training
    # examples of the first layer's pre-activations x W (float64 oracle; float32 sums
    # of N = 64 terms, and the variance as E[x²] − E[x]², which loses a few digits)
    pre = dataset.x.astype(np.float64) @ params["params"]["Dense_0"]["kernel"].astype(np.float64)
    stats = params["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], pre.mean(0), atol=64 * EPS32 * np.abs(pre).max())
    np.testing.assert_allclose(stats["var"], pre.var(0), rtol=1e-4)
    # so at these params the per-example (frozen-statistics) losses average to the loss
    # of training-mode batch norm on the full data set (float32: 64·ε relative)
    np.testing.assert_allclose(f["data_loss"], f["full_batch"], rtol=64 * EPS32)
    # statistics carry no gradient (and no weight decay): SGD leaves them alone
    assert _max_abs(f["grad"]["batch_stats"]) == 0.0 and _max_abs(f["grad"]["params"]) > 0


def test_batch_norm_sgd_step_with_per_replica_init(bn_problem):
    """Two replicas initialised from their own keys (as sgdsde.run does with an
    init_params function), then an SGD step: the weights move, the statistics don't."""
    problem, _ = bn_problem
    stepper, hyper = sd.sgd("iid"), sd.Hyper(0.1, 16).validate(problem.num_examples)

    @jax.jit
    def train(keys):
        params = jax.vmap(problem.info["init_params"])(keys)
        states = jax.vmap(stepper.init)(params)
        states = jax.vmap(stepper.step, in_axes=(0, 0, None, None))(keys, states, problem, hyper)
        refreshed = jax.vmap(lambda p: snn.recompute_batch_stats(problem, p))(params)
        return params, states.params, refreshed

    first, last, refreshed = _np(train(jax.random.split(jax.random.key(5))))
    assert _max_diff(first["batch_stats"], last["batch_stats"]) == 0.0  # frozen
    assert _max_diff(first["params"], last["params"]) > 1e-3  # trained
    # replicas have their own initial weights and the statistics that go with them
    one, two = (jax.tree_util.tree_map(lambda v: v[i], first) for i in (0, 1))
    assert _max_diff(one["batch_stats"], two["batch_stats"]) > 1e-3
    # recomputing them at the initial weights gives them back (a mean of N = 64 terms)
    assert _max_diff(refreshed, first) <= 64 * EPS32 * _max_abs(first["batch_stats"])


# ------------------------------------------------------------------- metrics
def test_metric_functions_match_numpy(bn_problem):
    problem, dataset = bn_problem
    model = problem.info["model"]

    @jax.jit
    def facts(key):
        params = snn.init_params(problem, key)
        stacked = jax.tree_util.tree_map(lambda p: jnp.stack([p, p]), params)
        return params, {
            "logits": model.apply(params, dataset.x),
            "whole": metrics.evaluate(model, params, dataset),
            # 10 does not divide 64: the padded last chunk is masked
            "chunked": metrics.evaluate(model, params, dataset, batch_size=10),
            "via_problem": metrics.accuracy(problem, params, dataset.x, dataset.y),
            "vmapped": jax.vmap(lambda p: metrics.cross_entropy(model, p, dataset.x, dataset.y))(stacked),
        }

    params, f = facts(jax.random.key(6))
    f = _np(f)
    logits = f["logits"].astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -log_probs[np.arange(64), dataset.y].mean()
    acc = np.mean(logits.argmax(1) == dataset.y)
    for out in (f["whole"], f["chunked"]):
        np.testing.assert_allclose(out["loss"], ce, rtol=64 * EPS32)  # float32 mean of 64 terms
        assert out["accuracy"] == acc
    assert f["via_problem"] == acc
    np.testing.assert_allclose(f["vmapped"], [ce, ce], rtol=64 * EPS32)
    with pytest.raises(ValueError, match="batch_size"):
        metrics.accuracy(model, params, dataset.x, dataset.y, batch_size=0)
    with pytest.raises(ValueError, match="'train'"):
        metrics.accuracy_curve("validation", 5)
    with pytest.raises(ValueError, match="every"):
        metrics.loss_curve("train", 0)
    # observers on the same arrays are the same object (compiled runs are reused)
    assert metrics.accuracy_curve(dataset, 5) is metrics.accuracy_curve(dataset, 5)
    assert metrics.accuracy_curve(dataset, 5).name == "eval_accuracy"


# ----------------------------------------------------------------- bad input
class _WithCache(linen.Module):
    @linen.compact
    def __call__(self, x):
        self.variable("cache", "count", lambda: jnp.zeros(()))
        return linen.Dense(3)(x)


def test_bad_input_is_rejected_with_clear_errors():
    dataset = data.gaussian_mixture(64, 4, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"outputs 5 logits per example but the data set has num_classes = 3"):
        snn.classification_problem(snn.MLP(5), dataset)
    with pytest.raises(ValueError, match=r"labels must lie in .* = \[0, 3\)"):
        bad = dataset._replace(y=np.where(np.arange(64) == 7, 3, dataset.y).astype(np.int32))
        snn.classification_problem(snn.MLP(3), bad)  # a Dataset built by hand is re-checked
    with pytest.raises(ValueError, match="model: cannot be applied .* NHWC"):
        snn.classification_problem(snn.CNN(3), dataset)
    with pytest.raises(TypeError, match="splits.train"):
        snn.classification_problem(snn.MLP(3), data.split(dataset, key=jax.random.key(0)))
    with pytest.raises(TypeError, match="flax.linen Module"):
        snn.classification_problem(lambda p, x: x, dataset)
    with pytest.raises(ValueError, match="weight_decay"):
        snn.classification_problem(snn.MLP(3), dataset, -1.0)
    with pytest.raises(ValueError, match=r"collections \['cache', 'params'\]"):
        snn.classification_problem(_WithCache(), dataset)
    problem = snn.classification_problem(snn.MLP(3), dataset)
    with pytest.raises(ValueError, match=r"batch_size: must lie in \[1, N\] = \[1, 64\], got values in \[65, 65\]"):
        sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper(0.1, 65), problem.info["init_params"], 10)
    with pytest.raises(ValueError, match=r"batch_size: must lie in \[1, N\] = \[1, 64\], got values in \[8, 128\]"):
        sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper.grid([0.1], [8, 128]), problem.info["init_params"], 10)
    with pytest.raises(ValueError, match="sgdsde.nn.classification_problem"):
        snn.init_params(sd.problems.linear_regression(10, 2, key=jax.random.key(0)), jax.random.key(0))


# ------------------------------------------------------- the SDE of a network
def test_euler_maruyama_with_empirical_noise_on_a_network():
    """One Gaussian-SGD step (euler_maruyama(empirical()), dt = 1) of an MLP (d = 67):
    θ' − θ + η g ~ N(0, Σ), Σ = η² C(θ)/S (docs/theory.md §2). Over R = 2048 draws the mean
    of ‖θ' − θ + η g‖² estimates tr Σ with standard error √(2 tr(Σ²)/R); allow 4σ."""
    eta, s, replicas = 0.5, 4, 2048
    dataset = data.gaussian_mixture(64, 4, 3, key=jax.random.key(3))
    problem = snn.classification_problem(snn.MLP(3, hidden=(8,)), dataset)
    stepper = sd.euler_maruyama(sd.noise.empirical())
    hyper = sd.Hyper(eta, s).validate(problem.num_examples)

    @jax.jit
    def facts(key):
        params = snn.init_params(problem, key)
        flat = lambda tree: jax.flatten_util.ravel_pytree(tree)[0]
        state = stepper.init(params, problem)
        keys = jax.random.split(jax.random.fold_in(key, 1), replicas)
        after = jax.vmap(lambda k: flat(stepper.step(k, state, problem, hyper).params))(keys)
        return after - flat(params), flat(problem.grad(params)), problem.gradient_covariance(params), flat(params)

    increments, grad, cov, theta = (np.asarray(a, np.float64) for a in facts(jax.random.key(8)))
    assert cov.shape == (67, 67)
    sigma = eta**2 * cov / s
    noise = increments + eta * grad
    stderr = np.sqrt(2 * np.trace(sigma @ sigma) / replicas)
    assert abs(np.mean(np.sum(noise**2, axis=1)) - np.trace(sigma)) <= 4 * stderr
    # and the noise is centred: each coordinate's mean is within 4 standard errors, plus
    # the float32 rounding of θ' − θ (≤ ε|θ|; it matters where a unit is dead, C_jj = 0)
    rounding = 2 * EPS32 * np.abs(theta)
    assert np.all(np.abs(noise.mean(0)) <= 4 * np.sqrt(np.diag(sigma) / replicas) + rounding)

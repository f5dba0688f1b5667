"""Accuracy proxies: cheap estimates of how well a candidate network will do, higher is better.

- ``train``: a short training at a proxy resolution; the score is top-1 validation accuracy in [0, 1].
- ``zero-cost`` (alias ``naswot``): NASWOT (Mellor et al., ICML 2021), training-free, one minibatch.
- ``synflow``: synaptic flow (Tanaka et al., NeurIPS 2020), training-free, data-free.
- ``supernet``: weight sharing (single-path one-shot, Guo et al., ECCV 2020): one supernet over the search
  space, trained once; a candidate inherits its path's weights, BatchNorm statistics are recomputed and
  its validation top-1 is the score, with no gradient step (`effnet.nas.proxies.supernet_proxy`).

`config` holds what decides the scores (`ProxyConfig`) and where they are computed (`ProxyRuntime`);
`data.load_proxy_data(config, runtime)` loads the data at the proxy's resolution, and
`factory.make_proxy(config, data, runtime)` returns a `Proxy` (`proxy`): an object with
`score(spec, report=None) -> float` (the supernet also needs its `SupernetSetup`: the space, the FLOPs band
and where its checkpoint lives). Every score is finite and positive, so the search can use it in place of
accuracy in the reward ACC * (FLOPs / T) ** w; a candidate that cannot be scored raises `ProxyFailure`.
"""

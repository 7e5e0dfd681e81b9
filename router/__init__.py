"""The router: predict a request's difficulty and decide tier, policy and budget before generating.

``router.router.Router`` is the entry point; ``features``, ``predictor`` (``heuristic``,
``learned``) and ``probe`` estimate difficulty; ``bands`` map it to a decision; ``budget``,
``load`` and ``shadow`` adapt and evaluate routing on live traffic; ``traces`` and ``train``
close the loop. No module here imports FastAPI, Redis or httpx: the server adapts its
statistics store and worker pool to ``stats.StatsSource`` and ``load.LoadSignal``.
"""

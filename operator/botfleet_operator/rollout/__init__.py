"""Canary rollouts of a Bot's model, one concern per module (as Argo Rollouts' canary.go
and analysis.go, and Flagger's scheduler):

- spec.py      `spec.rollout` of a Bot as frozen dataclasses, with the defaults filled in
- weights.py   the canary's weight schedule (explicit steps, or stepWeight up to maxWeight)
- analysis.py  the checks (built-in PromQL and custom queries), the Prometheus client,
               and the verdict of one check
- canary.py    the state machine: a pure `decide()` from the last state and the inputs of
               one tick to the next state and the actions the operator carries out

Only analysis.py does I/O (HTTP to Prometheus); everything else is pure.
"""

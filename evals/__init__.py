"""The agent step's scenario suite: recorded incidents an investigation must get right.

Each scenario (`scenarios/*.yaml`) holds a cluster's state (served by kmock, the
Kubernetes API emulator), pod logs, recorded Prometheus answers, the alert and its goal,
what a good investigation finds, and a scripted model that investigates as a good model
would. `make eval` runs them with the scripted model (deterministic; also part of
`make test`); `make eval MODEL=… BASE_URL=…` runs them against a real OpenAI-compatible
model and scores its findings, with the same model as judge where wording varies.
"""

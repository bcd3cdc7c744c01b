"""The run engine: a pure decision table (decide.py), the tick that applies it under the
run's lock (tick.py), and the activities that do slow I/O outside any transaction
(activities.py)."""

"""The engine's pure logic: matching alerts to workflows and the execution state machine."""

"""Pure executor logic: what a runner's outcome means as a step result. No I/O."""

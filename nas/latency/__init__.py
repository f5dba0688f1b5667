"""A network's latency where it will run: measured (`measure`) on this machine's CPU or GPU, in the runtime it
will be deployed with (`runtimes`), for MnasNet's objective of accuracy under a latency target."""

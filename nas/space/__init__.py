"""The search space: what a search may sample, what it can reach, and how it is fitted to the data.

- `choices`: `SearchSpace` and `StageChoices`, the decisions a search makes and the `NetworkSpec` they build;
- `load`: a space file (shipped by name, or a path) read and validated into a `SearchSpace`;
- `reach`: the least and greatest FLOPs of a space's networks, and the most any of them costs;
- `fit`: the space's base network fitted to the data's classes and image size.
"""

"""Training data: 2-D toy distributions by name, and small image sets.

    scoresde.data.toy("checkerboard").sample(n, generator=g)
"""

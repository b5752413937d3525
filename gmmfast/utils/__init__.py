"""What every domain shares: the estimator base class and its errors, input
checks, versioned ``.npz`` model files, the thread policy, progress bars and
verbose messages (the one way the library talks to the user), and the
optional matplotlib loader.

Imports only numpy, scipy, threadpoolctl and the compiled kernels' thread
helpers; nothing else in gmmfast.
"""

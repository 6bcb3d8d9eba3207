"""Small programs to start from: a worker (``hello_worker.py``) and a client
(``submit_and_watch.py``). The tests run both."""

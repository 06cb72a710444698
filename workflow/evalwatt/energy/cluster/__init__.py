"""The cluster's accounting of a job: CEEMS API, Prometheus series, sacct.

``collect`` asks each configured source about a finished job (``collection``: one collection
under way; ``http``: the GET client of the two with a server) and writes its raw file
(``evalwatt.contracts.accounting``); ``figures`` reads the raw files back into sources and
their figures (``source``: what a source reads into, the job-total source). ``ceems``,
``prometheus`` and ``sacct`` each know their own server or command and reply; ``settings`` is
the config's ``accounting`` section.
"""

"""The `mnist-etc` command line. Kept outside the `mnist_etc` library because some verbs run Prefect
flows (`flows/`), and the library never imports Prefect."""

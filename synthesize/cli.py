def register(subparsers):  # replaced below in this session
    subparsers.add_parser("generate", help="write tumours into scans")

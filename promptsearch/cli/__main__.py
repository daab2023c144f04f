from promptsearch.cli import main

main()

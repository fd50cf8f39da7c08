from dacovid_export.cli.main import main

main()

from keyvault.cli import main

main()

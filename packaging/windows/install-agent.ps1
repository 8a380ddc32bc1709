<#
.SYNOPSIS
    Installs the Puffin agent on Windows: a virtual environment, the enrolment, the
    PuffinAgent service, and optionally Sysmon.

.DESCRIPTION
    Run from an elevated PowerShell (5.1 or 7). Needs Python 3.11 or later installed for
    all users (the service runs as LocalSystem, which cannot read a per-user install).

      .\install-agent.ps1 -Server https://puffin.example:8443 -Token pfe_... `
          -Fingerprint AA:BB:... [-Name WS01] [-Sysmon [-SysmonConfig C:\path\config.xml]]

    Steps: create "<InstallDir>\venv" and pip-install the agent into it; make the state
    folder readable by SYSTEM and Administrators only; write a starting configuration
    (kept if one exists); enrol with the server; optionally install or update Sysmon;
    install (or update) and start the PuffinAgent service, restarted by Windows if it fails.

    This script has not been run on Windows by the Puffin project; see docs/agent.md.

.PARAMETER Server
    The Puffin server, https://HOST:PORT.
.PARAMETER Token
    An enrolment token from the console (or `puffin agent-token create`).
.PARAMETER Name
    The agent's name (default: this computer's name).
.PARAMETER Fingerprint
    The server certificate's SHA-256 fingerprint, shown with the token. Without it the
    enrolment shows the fingerprint and asks you to confirm it.
.PARAMETER Sysmon
    Also install Sysmon (downloaded from Sysinternals) with SwiftOnSecurity's configuration,
    downloaded at install time unless -SysmonConfig gives a local file.
.PARAMETER SysmonConfig
    A local Sysmon configuration file to use instead of downloading one.
.PARAMETER SysmonZip
    A local copy of Sysmon.zip to use instead of downloading it.
.PARAMETER Python
    The Python to build the virtual environment with (default: `py -3`, else `python`).
.PARAMETER Package
    What pip installs (default: puffin-mdr[agent]; a wheel file's path works too).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $Server,
    [Parameter(Mandatory = $true)] [string] $Token,
    [string] $Name = "",
    [string] $Fingerprint = "",
    [switch] $Sysmon,
    [string] $SysmonConfig = "",
    [string] $SysmonZip = "",
    [string] $Python = "",
    [string] $Package = "puffin-mdr[agent]",
    [string] $InstallDir = (Join-Path $env:ProgramFiles "Puffin\Agent"),
    [string] $StateDir = (Join-Path $env:ProgramData "Puffin\Agent"),
    [string] $ConfigFile = (Join-Path $env:ProgramData "Puffin\agent.json")
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"
$ServiceName = "PuffinAgent"
$SysmonUrl = "https://download.sysinternals.com/files/Sysmon.zip"
$SysmonConfigUrl = "https://raw.githubusercontent.com/SwiftOnSecurity/sysmon-config/master/sysmonconfig-export.xml"

function Invoke-Checked {
    # Runs a program with an argument array and stops the script if it fails.
    param([string] $Program, [string[]] $Arguments, [string] $What)
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Find-Python {
    if ($Python) { return @($Python) }
    if (Get-Command py.exe -ErrorAction SilentlyContinue) { return @("py.exe", "-3") }
    if (Get-Command python.exe -ErrorAction SilentlyContinue) { return @("python.exe") }
    throw "Python 3.11 or later was not found; install it for all users or pass -Python"
}

function Get-Download {
    param([string] $Url, [string] $Destination)
    Write-Host "downloading $Url"
    [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
    Invoke-WebRequest -Uri $Url -OutFile $Destination -UseBasicParsing
}

function Install-Sysmon {
    $folder = Join-Path $InstallDir "Sysmon"
    New-Item -ItemType Directory -Force -Path $folder | Out-Null
    $zip = $SysmonZip
    if (-not $zip) {
        $zip = Join-Path $folder "Sysmon.zip"
        Get-Download -Url $SysmonUrl -Destination $zip
    }
    Expand-Archive -Path $zip -DestinationPath $folder -Force
    $exe = if ([Environment]::Is64BitOperatingSystem) { "Sysmon64.exe" } else { "Sysmon.exe" }
    $sysmonExe = Join-Path $folder $exe
    $signature = Get-AuthenticodeSignature -FilePath $sysmonExe
    if ($signature.Status -ne "Valid" -or $signature.SignerCertificate.Subject -notmatch "O=Microsoft Corporation") {
        throw "$sysmonExe is not signed by Microsoft ($($signature.Status)); not installed"
    }
    $config = $SysmonConfig
    if (-not $config) {
        $config = Join-Path $folder "sysmonconfig-export.xml"
        Get-Download -Url $SysmonConfigUrl -Destination $config
    }
    [xml] (Get-Content -Raw -Path $config) | Out-Null  # a configuration that is not XML stops here
    $installed = Get-Service -Name "Sysmon64", "Sysmon" -ErrorAction SilentlyContinue
    if ($installed) {
        Write-Host "Sysmon is installed; updating its configuration"
        Invoke-Checked $sysmonExe @("-c", $config) "Sysmon configuration update"
    } else {
        Invoke-Checked $sysmonExe @("-accepteula", "-i", $config) "Sysmon installation"
    }
}

if (-not (Test-Administrator)) { throw "run this script from an elevated PowerShell (as Administrator)" }
if ($Server -notmatch "^https://[^/]+") { throw "-Server must look like https://HOST:PORT" }
if ($SysmonConfig -and -not (Test-Path -PathType Leaf $SysmonConfig)) { throw "no file $SysmonConfig" }

# 1. The virtual environment and the package.
$pythonCommand = @(Find-Python)  # @() keeps a one-item answer an array
$pythonArgs = @()
if ($pythonCommand.Count -gt 1) { $pythonArgs = $pythonCommand[1..($pythonCommand.Count - 1)] }
$venv = Join-Path $InstallDir "venv"
$venvPython = Join-Path $venv "Scripts\python.exe"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Invoke-Checked $pythonCommand[0] ($pythonArgs + @("-c", "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)")) "the Python 3.11 check"
if (-not (Test-Path $venvPython)) {
    Invoke-Checked $pythonCommand[0] ($pythonArgs + @("-m", "venv", $venv)) "creating $venv"
}
Invoke-Checked $venvPython @("-m", "pip", "install", "--upgrade", "pip") "upgrading pip"
Invoke-Checked $venvPython @("-m", "pip", "install", "--upgrade", $Package) "installing $Package"

# 2. The state folder: SYSTEM and Administrators only, nothing inherited.
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
Invoke-Checked "icacls.exe" @($StateDir, "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F") "restricting $StateDir"

# 3. A starting configuration (an operator's file is kept).
if (-not (Test-Path $ConfigFile)) {
    New-Item -ItemType Directory -Force -Path (Split-Path $ConfigFile) | Out-Null
    $starting = [ordered]@{
        eventlog  = @{ start_at = "now" }
        registry  = @{ interval = 300 }
        fim       = @{ scan_interval = 43200 }
        inventory = @{ interval = 3600 }
    }
    $starting | ConvertTo-Json -Depth 4 | Set-Content -Path $ConfigFile -Encoding ASCII
    Write-Host "wrote $ConfigFile"
}

# 4. Enrolment (the token is used once; the credential is kept in the state folder).
$enrol = @("-m", "puffin.agent", "enroll", "--server", $Server, "--token", $Token, "--state-dir", $StateDir)
if ($Name) { $enrol += @("--name", $Name) }
if ($Fingerprint) { $enrol += @("--fingerprint", $Fingerprint) }
Invoke-Checked $venvPython $enrol "enrolment"

# 5. Sysmon, when asked.
if ($Sysmon) { Install-Sysmon }

# 6. The service: installed (or updated), restarted on failure, then started.
$service = @("-m", "puffin.agent.windows.service", "--state-dir", $StateDir, "--config", $ConfigFile, "--startup", "auto")
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing) {
    if ($existing.Status -ne "Stopped") { Stop-Service -Name $ServiceName }
    Invoke-Checked $venvPython ($service + @("update")) "updating the service"
} else {
    Invoke-Checked $venvPython ($service + @("install")) "installing the service"
}
# The service host (pythonservice.exe, next to the venv) must find python3XX.dll and
# pywintypes3XX.dll, which sit in the base Python's folder: put it on the service's PATH.
$basePrefix = (& $venvPython -c "import sys; print(sys.base_prefix)").Trim()
$servicePath = "PATH=$basePrefix;$env:SystemRoot\System32;$env:SystemRoot;$env:SystemRoot\System32\Wbem"
$serviceKey = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
New-ItemProperty -Path $serviceKey -Name "Environment" -PropertyType MultiString -Value @($servicePath) -Force | Out-Null
Invoke-Checked "sc.exe" @("failure", $ServiceName, "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000") "setting the recovery actions"
Invoke-Checked "sc.exe" @("failureflag", $ServiceName, "1") "setting the failure flag"
Start-Service -Name $ServiceName
Get-Service -Name $ServiceName | Format-Table -AutoSize Name, Status, StartType
Write-Host "Puffin agent installed: state in $StateDir, configuration $ConfigFile, log $StateDir\agent.log"

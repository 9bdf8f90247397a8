"""DICOM PS3.15 Annex E, Table E.1-1: the Basic Application Level Confidentiality Profile.

The attributes of the table with their action in the *Basic Profile* column, as data
(keyword as in PS3.6 / pydicom's dictionary -> action code), written from the standard's
recent editions (2023-2024); the rows for command-group attributes (``0000,xxxx``), which
never occur in stored instances, are left out. Action codes (Table E.1-1a):

- ``D``: replace with a non-zero length value that may be a dummy value, consistent with the VR;
- ``Z``: replace with a zero length value (or a dummy value consistent with the VR);
- ``X``: remove (a sequence with all its items);
- ``K``: keep (non-sequence attributes unchanged; sequences cleaned);
- ``C``: clean (replace with values of similar meaning that do not identify);
- ``U``: replace with a non-zero length UID, internally consistent within a set of instances;
- ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``: the first unless the next is needed to keep the IOD
  conformant (Type 3 vs 2 vs 1); ``X/Z/U*``: X unless Z, or the replacement of the UIDs in its
  items, is needed to keep the IOD conformant.

Besides this table the basic profile removes every private attribute, and the curve
(``50xx,xxxx``) and overlay comment/data (``60xx,4000``, ``60xx,3000``) repeating groups,
listed in :data:`REPEATING` by (group mask, element) since they have no single tag.
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

__all__ = ["ACTIONS", "BASIC_PROFILE", "REPEATING", "TAGS"]

ACTIONS = ("D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

_TABLE = """
AccessionNumber Z
AcquisitionComments X
AcquisitionContextSequence X
AcquisitionDate X/Z
AcquisitionDateTime X/Z/D
AcquisitionDeviceProcessingDescription X/D
AcquisitionFieldOfViewLabel D
AcquisitionProtocolDescription X
AcquisitionTime X/Z
AcquisitionUID U
ActualHumanPerformersSequence X
AdditionalPatientHistory X
AddressTrial X
AdmissionID X
AdmittingDate X
AdmittingDiagnosesCodeSequence X
AdmittingDiagnosesDescription X
AdmittingTime X
Allergies X
ApprovalStatusDateTime X
Arbitrary X
AuthorObserverSequence X
BarcodeValue X
BranchOfService X
CassetteID X
CertificateOfSigner X
CertifiedTimestamp X
ClinicalTrialCoordinatingCenterName Z
ClinicalTrialProtocolEthicsCommitteeApprovalNumber X
ClinicalTrialProtocolEthicsCommitteeName D
ClinicalTrialProtocolID D
ClinicalTrialProtocolName Z
ClinicalTrialSeriesDescription X
ClinicalTrialSeriesID X
ClinicalTrialSiteID Z
ClinicalTrialSiteName Z
ClinicalTrialSponsorName D
ClinicalTrialSubjectID D
ClinicalTrialSubjectReadingID D
ClinicalTrialTimePointDescription X
ClinicalTrialTimePointID Z
CommentsOnRadiationDose X
CommentsOnThePerformedProcedureStep X
ConcatenationUID U
ConceptualVolumeUID U
ConfidentialityConstraintOnPatientDataDescription X
ConsultingPhysicianIdentificationSequence X
ConsultingPhysicianName X
ContainerComponentID X
ContainerDescription X
ContainerIdentifier Z
ContentCreatorIdentificationCodeSequence X
ContentCreatorName Z
ContentDate Z/D
ContentSequence X
ContentTime Z/D
ContextGroupExtensionCreatorUID U
ContrastBolusAgent Z/D
ContrastBolusStartTime X
ContrastBolusStopTime X
ContributionDateTime X/D
ContributionDescription X
CountryOfResidence X
CreatorVersionUID U
CurrentObserverTrial X
CurrentPatientLocation X
CurveDate X
CurveTime X
CustodialOrganizationSequence X
DataSetTrailingPadding X
Date D
DateOfDocumentOrVerbalTransactionTrial X
DateOfLastCalibration X
DateOfLastDetectorCalibration X
DateOfSecondaryCapture X
DateTime D
DateTimeOfLastCalibration X
DecayCorrectionDateTime X/D
DerivationDescription X
DetectorID X/D
DeviceDescription X
DeviceSerialNumber X/Z/D
DeviceUID U
DigitalSignaturesSequence X
DigitalSignatureUID X
DimensionOrganizationUID U
DischargeDate X
DischargeDiagnosisDescription X
DischargeTime X
DistributionAddress X
DistributionName X
DoseReferenceDescription X
DoseReferenceUID U
DosimetricObjectiveUID U
EndAcquisitionDateTime X/D
EthnicGroup X
FailedSOPInstanceUIDList U
FiducialUID U
FillerOrderNumberImagingServiceRequest Z
FractionGroupDescription X
FrameAcquisitionDateTime X/D
FrameComments X
FrameOfReferenceUID U
FrameReferenceDateTime X/D
GantryID X
GeneratorID X
GraphicAnnotationSequence D
HumanPerformerName X
HumanPerformerOrganization X
IconImageSequence X
IdentifyingComments X
ImageComments X
ImagePresentationComments X
ImagingServiceRequestComments X
Impressions X
InstanceCoercionDateTime X
InstanceCreationDate X/D
InstanceCreationTime X/Z/D
InstanceCreatorUID U
InstitutionAddress X
InstitutionalDepartmentName X
InstitutionalDepartmentTypeCodeSequence X
InstitutionCodeSequence X/Z/D
InstitutionName X/Z/D
InsurancePlanIdentification X
IntendedRecipientsOfResultsIdentificationSequence X
InterpretationApproverSequence X
InterpretationAuthor X
InterpretationDiagnosisDescription X
InterpretationIDIssuer X
InterpretationRecorder X
InterpretationText X
InterpretationTranscriber X
IrradiationEventUID U
IssuerOfAccessionNumberSequence X
IssuerOfAdmissionID X
IssuerOfAdmissionIDSequence X
IssuerOfPatientID X
IssuerOfPatientIDQualifiersSequence X
IssuerOfServiceEpisodeID X
IssuerOfServiceEpisodeIDSequence X
IssuerOfTheContainerIdentifierSequence Z
IssuerOfTheSpecimenIdentifierSequence Z
LargePaletteColorLookupTableUID U
LastMenstrualDate X
LongDeviceDescription X
MAC X
ManufacturerDeviceClassUID U
MediaStorageSOPInstanceUID U
MedicalAlerts X
MedicalRecordLocator X
MilitaryRank X
ModifiedAttributesSequence X
ModifiedImageDescription X
ModifyingDeviceID X
ModifyingDeviceManufacturer X
NameOfPhysiciansReadingStudy X
NamesOfIntendedRecipientsOfResults X
NonconformingDataElementValue X
NonconformingModifiedAttributesSequence X
ObservationDateTime X/D
ObservationDateTrial X
ObservationTimeTrial X
ObservationUID U
Occupation X
OperatorIdentificationSequence X
OperatorsName X/Z/D
OrderCallbackPhoneNumber X
OrderCallbackTelecomInformation X
OrderEnteredBy X
OrderEntererLocation X
OriginalAttributesSequence X
OtherPatientIDs X
OtherPatientIDsSequence X
OtherPatientNames X
OverlayDate X
OverlayTime X
PaletteColorLookupTableUID U
ParticipantSequence X
PatientAddress X
PatientAge X
PatientAlternativeCalendar X
PatientBirthDate Z
PatientBirthDateInAlternativeCalendar X
PatientBirthName X
PatientBirthTime X
PatientComments X
PatientDeathDateInAlternativeCalendar X
PatientID Z
PatientInstitutionResidence X
PatientInsurancePlanCodeSequence X
PatientMotherBirthName X
PatientName Z
PatientPrimaryLanguageCodeSequence X
PatientPrimaryLanguageModifierCodeSequence X
PatientReligiousPreference X
PatientSetupUID U
PatientSex Z
PatientSexNeutered X/Z
PatientSize X
PatientState X
PatientTelecomInformation X
PatientTelephoneNumbers X
PatientTransportArrangements X
PatientWeight X
PerformedLocation X
PerformedProcedureStepDescription X
PerformedProcedureStepEndDate X
PerformedProcedureStepEndTime X
PerformedProcedureStepID X
PerformedProcedureStepStartDate X
PerformedProcedureStepStartTime X
PerformedStationAETitle X
PerformedStationGeographicLocationCodeSequence X
PerformedStationName X
PerformedStationNameCodeSequence X
PerformingPhysicianIdentificationSequence X
PerformingPhysicianName X
PersonAddress X
PersonIdentificationCodeSequence D
PersonName D
PersonTelecomInformation X
PersonTelephoneNumbers X
PhysicianApprovingInterpretation X
PhysiciansOfRecord X
PhysiciansOfRecordIdentificationSequence X
PhysiciansReadingStudyIdentificationSequence X
PixelDataProviderURL X
PlacerOrderNumberImagingServiceRequest Z
PlateID X
PregnancyStatus X
PreMedication X
PrescriptionDescription X
ProcedureCodeSequence X/Z
ProductExpirationDateTime X
ProtocolName X/D
RadiopharmaceuticalAdministrationEventUID U
RadiopharmaceuticalStartDateTime X/D
RadiopharmaceuticalStartTime X/D
RadiopharmaceuticalStopDateTime X/D
RadiopharmaceuticalStopTime X/D
ReasonForStudy X
ReasonForTheImagingServiceRequest X
ReasonForVisit X
ReasonForVisitCodeSequence X
ReferencedColorPaletteInstanceUID U
ReferencedDateTime X/D
ReferencedDigitalSignatureSequence X
ReferencedDoseReferenceUID U
ReferencedFrameOfReferenceUID U
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID U
ReferencedImageSequence X/Z/U*
ReferencedPatientAliasSequence X
ReferencedPatientPhotoSequence X
ReferencedPatientSequence X
ReferencedPerformedProcedureStepSequence X/Z/D
ReferencedSOPInstanceMACSequence X
ReferencedSOPInstanceUID U
ReferencedSOPInstanceUIDInFile U
ReferencedStudySequence X/Z
ReferringPhysicianAddress X
ReferringPhysicianIdentificationSequence X
ReferringPhysicianName Z
ReferringPhysicianTelephoneNumbers X
RegionOfResidence X
RelatedFrameOfReferenceUID U
RelatedSeriesSequence X
RequestAttributesSequence X
RequestedContrastAgent X
RequestedProcedureComments X
RequestedProcedureDescription X/Z
RequestedProcedureID X
RequestedProcedureLocation X
RequestingPhysician X
RequestingService X
ResponsibleOrganization X
ResponsiblePerson X
ResultsComments X
ResultsDistributionListSequence X
ResultsIDIssuer X
ReviewerName X/Z
ROIDescription X
ROIGenerationDescription X
ROIInterpreter Z
RTPlanDescription X
RTPlanLabel D
RTPlanName X
ScheduledAdmissionDate X
ScheduledAdmissionTime X
ScheduledDischargeDate X
ScheduledDischargeTime X
ScheduledHumanPerformersSequence X
ScheduledPatientInstitutionResidence X
ScheduledPerformingPhysicianIdentificationSequence X
ScheduledPerformingPhysicianName X
ScheduledProcedureStepDescription X
ScheduledProcedureStepEndDate X
ScheduledProcedureStepEndTime X
ScheduledProcedureStepID X
ScheduledProcedureStepLocation X
ScheduledProcedureStepStartDate X
ScheduledProcedureStepStartTime X
ScheduledStationAETitle X
ScheduledStationGeographicLocationCodeSequence X
ScheduledStationName X
ScheduledStationNameCodeSequence X
ScheduledStudyLocation X
ScheduledStudyLocationAETitle X
ScheduledStudyStartDate X
ScheduledStudyStartTime X
ScheduledStudyStopDate X
ScheduledStudyStopTime X
SeriesDate X/D
SeriesDescription X
SeriesInstanceUID U
SeriesTime X/D
ServiceEpisodeDescription X
ServiceEpisodeID X
SlideIdentifier X
SmokingStatus X
SOPInstanceUID U
SourceConceptualVolumeUID U
SourceImageSequence X/Z/U*
SourceSerialNumber X
SpecialNeeds X
SpecimenDetailedDescription X
SpecimenIdentifier Z
SpecimenShortDescription X
SpecimenUID U
StartAcquisitionDateTime X/D
StationName X/Z/D
StorageMediaFileSetID X
StorageMediaFileSetUID U
StructureSetLabel D
StructureSetName X
StudyArrivalDate X
StudyArrivalTime X
StudyComments X
StudyCompletionDate X
StudyCompletionTime X
StudyDate Z
StudyDescription X
StudyID Z
StudyIDIssuer X
StudyInstanceUID U
StudyTime Z
StudyVerifiedDate X
StudyVerifiedTime X
SynchronizationFrameOfReferenceUID U
TargetUID U
TelephoneNumberTrial X
TemplateExtensionCreatorUID U
TemplateExtensionOrganizationUID U
TextComments X
TextString X
TextValue X
TimezoneOffsetFromUTC X
TopicAuthor X
TopicKeywords X
TopicSubject X
TopicTitle X
TrackingUID U
TransactionUID U
TreatmentSessionUID U
UDISequence X
UID U
UniqueDeviceIdentifier X
VerifyingObserverIdentificationCodeSequence Z
VerifyingObserverName D
VerifyingObserverSequence D
VerifyingOrganization X
VisitComments X
"""


def _parse(text: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for line in text.strip().splitlines():
        keyword, action = line.split()
        if action not in ACTIONS:
            raise ValueError(f"Table E.1-1: unknown action {action!r} for {keyword}")
        if keyword in table:
            raise ValueError(f"Table E.1-1: {keyword} listed twice")
        table[keyword] = action
    return table


#: keyword -> Basic Profile action.
BASIC_PROFILE: dict[str, str] = _parse(_TABLE)

#: tag (int) -> (keyword, action); every keyword resolves in pydicom's dictionary.
TAGS: dict[int, tuple[str, str]] = {}
for _kw, _action in BASIC_PROFILE.items():
    _tag = tag_for_keyword(_kw)
    if _tag is None:
        raise ValueError(f"Table E.1-1: {_kw} is not a keyword of pydicom's data dictionary")
    TAGS[int(_tag)] = (_kw, _action)

#: Repeating groups: (first group, element or None for the whole group, name, action);
#: groups first, first + 2, ..., first + 0x1E.
REPEATING: tuple[tuple[int, int | None, str, str], ...] = (
    (0x5000, None, "CurveData (50xx,xxxx)", "X"),
    (0x6000, 0x3000, "OverlayData (60xx,3000)", "X"),
    (0x6000, 0x4000, "OverlayComments (60xx,4000)", "X"),
)
